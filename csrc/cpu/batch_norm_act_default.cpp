// batch_norm_act CPU kernels for any x86-64 / ARM CPU (the compiler's baseline instruction set).
#define FG_CPU_KERNEL_NS kernels_default
#include "batch_norm_act_kernel.h"
