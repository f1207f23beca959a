#!/bin/bash
# Decode ablation on the issue-7 reference file (the `device` tool's GPU machine): chains of
# small dispatches (what one costs when it waits for the one before), then tg128 in full and
# without each kernel's dispatches in turn (`kiln bench --ablate`), three runs each, so the time
# per token every kernel costs in the running stream (launch and barrier included) can be read
# off. The last row leaves out everything but the router and the argmax (whose indices the
# unchecked shaders follow): what recording, submitting and the bare dispatches cost.
#
# Expects what scripts/device_setup.sh expects; $BIN is the binary under carry/ (kiln).
set -e
BIN=${BIN:-kiln}
source scripts/device_setup.sh
# A decoded token's KDA layer is its projections ("matvecs"), "kda_step" and the output
# projection ("matvec Q4_K q8 row 4096"); an MLA layer's output projection still stages its
# input ("matvec Q4_K q8 4096").
K="matvecs,matmul_sel_pair,moe_down,add_rms_norm,matvec Q4_K q8 row 4096,matvec Q4_K q8 4096"
K="$K,matvec F32,kda_step,mla_,matmul_sel Q,matvec Q4_K q8 row 2304x163840,embed"
ALL="matmul+matvec+embed+rms_norm+add+gated+swiglu+sum_slices+kda_+short_conv+mla_+moe_combine+moe_group+moe_down+copy"
./carry/"$BIN" bench -m $M --backend wgpu -p 0 -n 128 -r 3 --ablate "$K,$ALL"
