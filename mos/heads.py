"""Names of the heads fitted in closed form rather than trained (torch-free: the training config's
checks read them before torch is loaded; the heads themselves are mos.model.kernel_head)."""

SVR = "svr"
RIDGE = "ridge"
KERNEL_HEADS = (SVR, RIDGE)
# The module name each fitted regressor sits under: its exported ONNX nodes are named
# "/<target>/fitted/...", which the int8 and fp16 variants leave in fp32 (mos.export.graph).
FITTED_SCOPE = "fitted"
