/* pdc OpenCL host runtime: the device, its context, queue and program, buffers and launches, for
 * bundles compiled for the opencl and Mali targets. C99 on the OpenCL 1.2 API (no C++ wrapper).
 *
 * Device choice: PDC_OPENCL_PLATFORM and PDC_OPENCL_DEVICE (indices, default 0) pick the device.
 * The program is built once, at init, and its binary cached in PDC_OPENCL_CACHE (default
 * $XDG_CACHE_HOME/pdc/opencl or ~/.cache/pdc/opencl), keyed by the source, the build options and
 * the device and driver: a later init loads the binary instead of compiling the source.
 * Every failing call leaves a one-line reason in pdc_opencl_error(). */
#ifndef PDC_OPENCL_H
#define PDC_OPENCL_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>
#include <stddef.h>
#include "pdc_runtime.h"

typedef struct {
    cl_context context;
    cl_device_id device;
    cl_command_queue queue;
    cl_program program;
} pdc_cl;

/* The reason of the last failure (empty when none). */
const char *pdc_opencl_error(void);

/* Opens the device (see above) and builds `source`; needs device buffers aligned to `alignment`
   bytes to be usable as sub-buffers (fails with a reason when the device asks for more). */
pdc_status pdc_cl_open(pdc_cl *cl, const char *source, const char *options, size_t alignment);
void pdc_cl_close(pdc_cl *cl);

/* A device buffer of `bytes` bytes (at least 1), filled from `host` when not NULL. */
pdc_status pdc_cl_buffer(pdc_cl *cl, size_t bytes, const void *host, cl_mem *out);
/* The `bytes` bytes of `parent` at `offset` (aligned) as a buffer of their own. */
pdc_status pdc_cl_sub(cl_mem parent, size_t offset, size_t bytes, cl_mem *out);
/* Kernel `name` of the program with its `count` buffer arguments set once. */
pdc_status pdc_cl_kernel(pdc_cl *cl, const char *name, int count, const cl_mem *args, cl_kernel *out);
/* Enqueues a launch (local NULL: the driver's choice). */
pdc_status pdc_cl_launch(pdc_cl *cl, cl_kernel kernel, cl_uint dims, const size_t *global, const size_t *local);
/* Host -> device and device -> host copies on the queue; both block until done (the host memory
   is free again on return). */
pdc_status pdc_cl_write(pdc_cl *cl, cl_mem buffer, size_t offset, const void *host, size_t bytes);
pdc_status pdc_cl_read(pdc_cl *cl, cl_mem buffer, size_t offset, void *host, size_t bytes);
/* Waits for everything enqueued. */
pdc_status pdc_cl_finish(pdc_cl *cl);

#endif
