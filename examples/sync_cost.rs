//! What a dependent dispatch costs against a grid-wide barrier inside one dispatch (an atomic
//! count and a spin), on the first Vulkan adapter: the measurement behind the question whether
//! a persistent decode kernel would pay. `cargo run --release --example sync_cost` on a GPU;
//! it refuses CPU adapters (lavapipe), where the spinning workgroups would never let the
//! others run.

use std::time::Instant;

const EMPTY: &str = r#"
@group(0) @binding(0) var<storage, read_write> buf: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) w: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    if w.x == 0u && li == 0u {
        buf[0] = buf[0] + 1u;
    }
}
"#;

const GRID: &str = r#"
@group(0) @binding(0) var<storage, read_write> count: atomic<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
override N: u32 = 1000u;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) w: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    for (var i = 0u; i < N; i++) {
        if li == 0u {
            out[w.x] = i;
        }
        storageBarrier();
        workgroupBarrier();
        if li == 0u {
            atomicAdd(&count, 1u);
            let goal = (i + 1u) * nw.x;
            while atomicLoad(&count) < goal {}
        }
        workgroupBarrier();
        storageBarrier();
    }
}
"#;

fn main() {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = wgpu::Backends::VULKAN;
    let instance = wgpu::Instance::new(desc);
    let Ok(adapter) = pollster::block_on(instance.request_adapter(&Default::default())) else {
        eprintln!("sync_cost: no Vulkan adapter");
        std::process::exit(1);
    };
    let info = adapter.get_info();
    if info.device_type == wgpu::DeviceType::Cpu {
        eprintln!(
            "sync_cost: {} runs workgroups a few at a time: a grid barrier would never return",
            info.name
        );
        std::process::exit(1);
    }
    println!("adapter: {}", info.name);
    let (device, queue) = match pollster::block_on(adapter.request_device(&Default::default())) {
        Ok(dq) => dq,
        Err(e) => {
            eprintln!("sync_cost: opening {}: {e}", info.name);
            std::process::exit(1);
        }
    };
    let buffer = |size: u64| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        })
    };
    let pipeline = |src: &str, constants: &[(&str, f64)]| {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: None,
            source: wgpu::ShaderSource::Wgsl(src.into()),
        });
        device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: None,
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                ..Default::default()
            },
            cache: None,
        })
    };
    // Seconds from submitting the pass `record` records until the device has run it.
    let time = |record: &dyn Fn(&mut wgpu::ComputePass)| {
        let mut enc = device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            record(&mut pass);
        }
        let cmd = enc.finish();
        let t = Instant::now();
        queue.submit([cmd]);
        if let Err(e) = device.poll(wgpu::PollType::wait_indefinitely()) {
            eprintln!("sync_cost: waiting for the GPU: {e}");
            std::process::exit(1);
        }
        t.elapsed().as_secs_f64()
    };
    let n = 2000u32;
    let empty = pipeline(EMPTY, &[]);
    let b = buffer(1 << 16);
    let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &empty.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry {
            binding: 0,
            resource: b.as_entire_binding(),
        }],
    });
    for groups in [1u32, 132, 1024] {
        let best = (0..5)
            .map(|_| {
                time(&|pass| {
                    pass.set_pipeline(&empty);
                    pass.set_bind_group(0, &bind, &[]);
                    for _ in 0..n {
                        pass.dispatch_workgroups(groups, 1, 1);
                    }
                })
            })
            .fold(f64::MAX, f64::min);
        println!(
            "dependent dispatches of {groups} workgroups: {:.2} us each",
            best * 1e6 / n as f64
        );
    }
    let grid = pipeline(GRID, &[("N", n as f64)]);
    let out = buffer(1 << 16);
    for groups in [66u32, 132, 264] {
        let best = (0..5)
            .map(|_| {
                // The count starts at zero: a fresh buffer each run.
                let count = buffer(256);
                let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &grid.get_bind_group_layout(0),
                    entries: &[
                        wgpu::BindGroupEntry {
                            binding: 0,
                            resource: count.as_entire_binding(),
                        },
                        wgpu::BindGroupEntry {
                            binding: 1,
                            resource: out.as_entire_binding(),
                        },
                    ],
                });
                time(&|pass| {
                    pass.set_pipeline(&grid);
                    pass.set_bind_group(0, &bind, &[]);
                    pass.dispatch_workgroups(groups, 1, 1);
                })
            })
            .fold(f64::MAX, f64::min);
        println!(
            "grid barriers over {groups} workgroups in one dispatch: {:.2} us each",
            best * 1e6 / n as f64
        );
    }
}
