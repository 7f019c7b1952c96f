// upfirdn2d CPU kernels for any CPU (the compiler's baseline instruction set).
#define FG_CPU_KERNEL_NS kernels_default
#include "upfirdn2d_kernel.h"
