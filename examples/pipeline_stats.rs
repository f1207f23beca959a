//! What the Vulkan driver made of each kernel: registers per thread, shared memory, spills and
//! whatever else it reports through VK_KHR_pipeline_executable_properties, which wgpu does not
//! expose. Occupancy, and so how many loads a kernel keeps in flight, follows from these.
//!
//! Dump the kernels a run compiles, then ask the driver about them (on a GPU):
//!   KILN_KERNEL_DUMP=/tmp/kernels kiln bench -m model.gguf -p 512 -n 8 --backend wgpu
//!   cargo run --release --example pipeline_stats -- /tmp/kernels
//!
//! Each dumped module is compiled to SPIR-V by naga, as wgpu would (its `override` constants
//! applied, no bounds checks), and built into a compute pipeline with statistics captured.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use ash::vk;

fn main() -> Result<()> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: pipeline_stats DIR (a KILN_KERNEL_DUMP directory)")?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("{}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no dumped kernels (*.wgsl)", dir.display());
    }
    // Compiled before the GPU is opened, so that a machine without one still checks them.
    let mut kernels = Vec::new();
    for f in &files {
        let d = read_dump(f).with_context(|| format!("{}", f.display()))?;
        let (spv, bindings) = to_spirv(&d).with_context(|| format!("{}", f.display()))?;
        kernels.push((d, spv, bindings));
    }
    let gpu = Gpu::new().context(format!("{} kernels compiled to SPIR-V", kernels.len()))?;
    println!("{}", gpu.name);
    for (d, spv, bindings) in &kernels {
        match gpu.statistics(spv, bindings, &d.entry) {
            Ok(list) => println!("{}", line(d, &list)),
            Err(e) => println!("{}: {e:#}", d.label),
        }
    }
    Ok(())
}

/// One dumped kernel: its label, entry point, `override` constants and WGSL source.
struct Dumped {
    label: String,
    entry: String,
    constants: naga::back::PipelineConstants,
    source: String,
}

fn read_dump(path: &Path) -> Result<Dumped> {
    let source = std::fs::read_to_string(path)?;
    let (mut label, mut entry) = (String::new(), String::new());
    let mut constants = naga::back::PipelineConstants::default();
    for line in source.lines() {
        let Some(rest) = line.strip_prefix("// kiln-kernel ") else {
            break;
        };
        let mut words = rest.splitn(2, ' ');
        match (words.next(), words.next()) {
            (Some("label"), Some(v)) => label = v.to_string(),
            (Some("entry"), Some(v)) => entry = v.to_string(),
            (Some("constant"), Some(v)) => {
                let (k, v) = v.split_once(' ').context("constant without a value")?;
                constants.insert(k.to_string(), v.parse()?);
            }
            _ => bail!("unknown header line {line:?}"),
        }
    }
    if entry.is_empty() {
        bail!("no `// kiln-kernel entry` line");
    }
    Ok(Dumped {
        label,
        entry,
        constants,
        source,
    })
}

/// The module as SPIR-V, and the bindings its entry point's layout needs.
fn to_spirv(d: &Dumped) -> Result<(Vec<u32>, Vec<vk::DescriptorSetLayoutBinding<'static>>)> {
    let module = naga::front::wgsl::parse_str(&d.source)
        .map_err(|e| anyhow!("{}", e.emit_to_string(&d.source)))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| anyhow!("{e:?}"))?;
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((naga::ShaderStage::Compute, &d.entry)),
        &d.constants,
    )
    .map_err(|e| anyhow!("{e:?}"))?;
    // What wgpu-hal passes on a Vulkan 1.3 device for a module made with
    // `create_shader_module_trusted(.., ShaderRuntimeChecks::unchecked())`, as kiln's are.
    let unchecked = naga::proc::BoundsCheckPolicy::Unchecked;
    let options = naga::back::spv::Options {
        lang_version: (1, 6),
        flags: naga::back::spv::WriterFlags::empty(),
        // Bindings as declared (group → set), where wgpu maps them to its own layout.
        fake_missing_bindings: true,
        bounds_check_policies: naga::proc::BoundsCheckPolicies {
            index: unchecked,
            buffer: unchecked,
            image_load: unchecked,
            binding_array: unchecked,
        },
        zero_initialize_workgroup_memory:
            naga::back::spv::ZeroInitializeWorkgroupMemoryMode::Native,
        force_loop_bounding: false,
        emit_int_div_checks: false,
        ..Default::default()
    };
    let pipeline = naga::back::spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: d.entry.clone(),
    };
    let spv = naga::back::spv::write_vec(&module, &info, &options, Some(&pipeline))?;
    let bindings = module
        .global_variables
        .iter()
        .filter_map(|(_, g)| {
            let ty = match g.space {
                naga::AddressSpace::Uniform => vk::DescriptorType::UNIFORM_BUFFER,
                naga::AddressSpace::Storage { .. } => vk::DescriptorType::STORAGE_BUFFER,
                _ => return None,
            };
            let b = g.binding.as_ref()?;
            (b.group == 0).then(|| {
                vk::DescriptorSetLayoutBinding::default()
                    .binding(b.binding)
                    .descriptor_type(ty)
                    .descriptor_count(1)
                    .stage_flags(vk::ShaderStageFlags::COMPUTE)
            })
        })
        .collect();
    Ok((spv, bindings))
}

/// A kernel's label, constants and statistics, on one line.
fn line(d: &Dumped, list: &[(String, String)]) -> String {
    let mut line = d.label.clone();
    if !d.constants.is_empty() {
        let mut c: Vec<String> = d
            .constants
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        c.sort();
        line += &format!(" [{}]", c.join(" "));
    }
    for (name, value) in list {
        line += &format!(" | {name}: {value}");
    }
    line
}

/// A Vulkan device with pipeline statistics and every feature the GPU has turned on (the
/// kernels use f16, 8-bit storage, subgroups, integer dot products, cooperative matrices).
struct Gpu {
    name: String,
    _entry: ash::Entry,
    _instance: ash::Instance,
    device: ash::Device,
    exec: ash::khr::pipeline_executable_properties::Device,
}

impl Gpu {
    fn new() -> Result<Gpu> {
        // SAFETY: plain Vulkan setup; every handle lives as long as the process.
        unsafe {
            let entry = ash::Entry::load().context("loading the Vulkan loader")?;
            let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_3);
            let instance = entry.create_instance(
                &vk::InstanceCreateInfo::default().application_info(&app),
                None,
            )?;
            let want = ash::khr::pipeline_executable_properties::NAME;
            let coop = ash::khr::cooperative_matrix::NAME;
            let mut chosen = None;
            for pd in instance.enumerate_physical_devices()? {
                let exts = instance.enumerate_device_extension_properties(pd)?;
                let has = |n: &std::ffi::CStr| {
                    exts.iter()
                        .any(|e| e.extension_name_as_c_str().is_ok_and(|x| x == n))
                };
                let props = instance.get_physical_device_properties(pd);
                // A GPU before a CPU adapter (lavapipe), whose statistics are its own.
                let cpu = props.device_type == vk::PhysicalDeviceType::CPU;
                if has(want) && chosen.as_ref().is_none_or(|c: &(_, _, _, bool)| c.3) {
                    chosen = Some((pd, has(coop), props, cpu));
                }
            }
            let (pd, has_coop, props, _) =
                chosen.context("no Vulkan adapter with VK_KHR_pipeline_executable_properties")?;
            let name = props
                .device_name_as_c_str()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut f11 = vk::PhysicalDeviceVulkan11Features::default();
            let mut f12 = vk::PhysicalDeviceVulkan12Features::default();
            let mut f13 = vk::PhysicalDeviceVulkan13Features::default();
            let mut fexec = vk::PhysicalDevicePipelineExecutablePropertiesFeaturesKHR::default();
            let mut fcoop = vk::PhysicalDeviceCooperativeMatrixFeaturesKHR::default();
            let mut f2 = vk::PhysicalDeviceFeatures2::default()
                .push_next(&mut f11)
                .push_next(&mut f12)
                .push_next(&mut f13)
                .push_next(&mut fexec);
            if has_coop {
                f2 = f2.push_next(&mut fcoop);
            }
            instance.get_physical_device_features2(pd, &mut f2);
            let mut exts = vec![want.as_ptr()];
            if has_coop {
                exts.push(coop.as_ptr());
            }
            let family = instance
                .get_physical_device_queue_family_properties(pd)
                .iter()
                .position(|q| q.queue_flags.contains(vk::QueueFlags::COMPUTE))
                .context("no compute queue")? as u32;
            let queue = [vk::DeviceQueueCreateInfo::default()
                .queue_family_index(family)
                .queue_priorities(&[1.0])];
            let info = vk::DeviceCreateInfo::default()
                .queue_create_infos(&queue)
                .enabled_extension_names(&exts)
                .push_next(&mut f2);
            let device = instance.create_device(pd, &info, None)?;
            let exec = ash::khr::pipeline_executable_properties::Device::new(&instance, &device);
            Ok(Gpu {
                name,
                _entry: entry,
                _instance: instance,
                device,
                exec,
            })
        }
    }

    /// The driver's statistics for a compute pipeline of `spv`, name and value each.
    fn statistics(
        &self,
        spv: &[u32],
        bindings: &[vk::DescriptorSetLayoutBinding<'_>],
        entry: &str,
    ) -> Result<Vec<(String, String)>> {
        let d = &self.device;
        let entry = CString::new(entry)?;
        let mut h = Handles {
            device: d,
            module: vk::ShaderModule::null(),
            set: vk::DescriptorSetLayout::null(),
            layout: vk::PipelineLayout::null(),
            pipeline: vk::Pipeline::null(),
        };
        // SAFETY: the handles made here are used only here, and `h` destroys them on every
        // way out.
        unsafe {
            h.module =
                d.create_shader_module(&vk::ShaderModuleCreateInfo::default().code(spv), None)?;
            h.set = d.create_descriptor_set_layout(
                &vk::DescriptorSetLayoutCreateInfo::default().bindings(bindings),
                None,
            )?;
            let sets = [h.set];
            h.layout = d.create_pipeline_layout(
                &vk::PipelineLayoutCreateInfo::default().set_layouts(&sets),
                None,
            )?;
            let stage = vk::PipelineShaderStageCreateInfo::default()
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(h.module)
                .name(&entry);
            let info = vk::ComputePipelineCreateInfo::default()
                .stage(stage)
                .layout(h.layout)
                .flags(vk::PipelineCreateFlags::CAPTURE_STATISTICS_KHR);
            h.pipeline = d
                .create_compute_pipelines(vk::PipelineCache::null(), &[info], None)
                .map_err(|(_, e)| anyhow!("creating the pipeline: {e}"))?[0];
            let mut out = Vec::new();
            let execs = self.exec.get_pipeline_executable_properties(
                &vk::PipelineInfoKHR::default().pipeline(h.pipeline),
            )?;
            for i in 0..execs.len() as u32 {
                let info = vk::PipelineExecutableInfoKHR::default()
                    .pipeline(h.pipeline)
                    .executable_index(i);
                for s in self.exec.get_pipeline_executable_statistics(&info)? {
                    let name = s
                        .name_as_c_str()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let value = match s.format {
                        vk::PipelineExecutableStatisticFormatKHR::BOOL32 => {
                            (s.value.b32 != 0).to_string()
                        }
                        vk::PipelineExecutableStatisticFormatKHR::INT64 => s.value.i64.to_string(),
                        vk::PipelineExecutableStatisticFormatKHR::UINT64 => s.value.u64.to_string(),
                        _ => s.value.f64.to_string(),
                    };
                    out.push((name, value));
                }
            }
            Ok(out)
        }
    }
}

/// One pipeline's Vulkan objects, destroyed when it goes out of scope (a null handle, not yet
/// made, is a no-op to destroy).
struct Handles<'a> {
    device: &'a ash::Device,
    module: vk::ShaderModule,
    set: vk::DescriptorSetLayout,
    layout: vk::PipelineLayout,
    pipeline: vk::Pipeline,
}

impl Drop for Handles<'_> {
    fn drop(&mut self) {
        // SAFETY: nothing uses the handles any more; the device outlives them.
        unsafe {
            self.device.destroy_pipeline(self.pipeline, None);
            self.device.destroy_pipeline_layout(self.layout, None);
            self.device.destroy_descriptor_set_layout(self.set, None);
            self.device.destroy_shader_module(self.module, None);
        }
    }
}
