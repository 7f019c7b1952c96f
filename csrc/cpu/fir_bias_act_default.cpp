// fir_bias_act CPU kernels for any CPU (the compiler's baseline instruction set).
#define FG_CPU_KERNEL_NS kernels_default
#include "fir_bias_act_kernel.h"
