/* pdc OpenCL host runtime (see pdc_opencl.h). */
#include "pdc_opencl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char last_error[512];

const char *pdc_opencl_error(void) { return last_error; }

static pdc_status fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return PDC_ERR_DEVICE;
}

static const char *cl_error_name(cl_int e) {
    switch (e) {
    case CL_DEVICE_NOT_FOUND: return "CL_DEVICE_NOT_FOUND";
    case CL_DEVICE_NOT_AVAILABLE: return "CL_DEVICE_NOT_AVAILABLE";
    case CL_MEM_OBJECT_ALLOCATION_FAILURE: return "CL_MEM_OBJECT_ALLOCATION_FAILURE (out of device memory)";
    case CL_OUT_OF_RESOURCES: return "CL_OUT_OF_RESOURCES";
    case CL_OUT_OF_HOST_MEMORY: return "CL_OUT_OF_HOST_MEMORY";
    case CL_BUILD_PROGRAM_FAILURE: return "CL_BUILD_PROGRAM_FAILURE";
    case CL_MISALIGNED_SUB_BUFFER_OFFSET: return "CL_MISALIGNED_SUB_BUFFER_OFFSET";
    case CL_INVALID_VALUE: return "CL_INVALID_VALUE";
    case CL_INVALID_PLATFORM: return "CL_INVALID_PLATFORM";
    case CL_INVALID_DEVICE: return "CL_INVALID_DEVICE";
    case CL_INVALID_BINARY: return "CL_INVALID_BINARY";
    case CL_INVALID_BUFFER_SIZE: return "CL_INVALID_BUFFER_SIZE";
    case CL_INVALID_KERNEL_NAME: return "CL_INVALID_KERNEL_NAME";
    case CL_INVALID_KERNEL_ARGS: return "CL_INVALID_KERNEL_ARGS";
    case CL_INVALID_WORK_GROUP_SIZE: return "CL_INVALID_WORK_GROUP_SIZE";
    case CL_INVALID_WORK_ITEM_SIZE: return "CL_INVALID_WORK_ITEM_SIZE";
    case CL_INVALID_GLOBAL_WORK_SIZE: return "CL_INVALID_GLOBAL_WORK_SIZE";
    case -1001: return "no OpenCL platform installed (CL_PLATFORM_NOT_FOUND_KHR)";
    default: return "an OpenCL error";
    }
}

#define CL_CHECK(call, what)                                                                      \
    do {                                                                                          \
        cl_int e_ = (call);                                                                       \
        if (e_ != CL_SUCCESS) return fail("OpenCL: %s failed: %s (%d)", what, cl_error_name(e_), e_); \
    } while (0)

static int env_index(const char *name) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : 0;
}

/* ---- the program binary cache -------------------------------------------------------------- */
static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static uint64_t device_key(cl_device_id dev, uint64_t h) {
    static const cl_device_info infos[] = {CL_DEVICE_NAME, CL_DEVICE_VERSION, CL_DRIVER_VERSION, CL_DEVICE_VENDOR};
    for (size_t i = 0; i < sizeof infos / sizeof infos[0]; i++) {
        char text[256] = {0};
        clGetDeviceInfo(dev, infos[i], sizeof text - 1, text, NULL);
        h = fnv1a(h, text, strlen(text) + 1);
    }
    return h;
}

/* The cache file's path in `path` (created folders included); 0 when there is no usable folder. */
static int cache_path(char *path, size_t size, uint64_t key) {
    const char *dir = getenv("PDC_OPENCL_CACHE");
    char base[400];
    if (dir && *dir) {
        snprintf(base, sizeof base, "%s", dir);
    } else if (getenv("XDG_CACHE_HOME") && *getenv("XDG_CACHE_HOME")) {
        snprintf(base, sizeof base, "%s/pdc/opencl", getenv("XDG_CACHE_HOME"));
    } else if (getenv("HOME") && *getenv("HOME")) {
        snprintf(base, sizeof base, "%s/.cache/pdc/opencl", getenv("HOME"));
    } else {
        return 0;
    }
    for (char *p = base + 1; *p; p++) { /* mkdir -p */
        if (*p == '/') {
            *p = 0;
            mkdir(base, 0755);
            *p = '/';
        }
    }
    if (mkdir(base, 0755) != 0 && errno != EEXIST) return 0;
    snprintf(path, size, "%s/%016llx.bin", base, (unsigned long long)key);
    return 1;
}

static unsigned char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *data = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n > 0 && fseek(f, 0, SEEK_SET) == 0 && (data = (unsigned char *)malloc((size_t)n))) {
            if (fread(data, 1, (size_t)n, f) != (size_t)n) {
                free(data);
                data = NULL;
            }
            *size = (size_t)n;
        }
    }
    fclose(f);
    return data;
}

static void write_binary(cl_program program, const char *path) {
    size_t size = 0;
    if (clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS || !size) return;
    unsigned char *data = (unsigned char *)malloc(size);
    if (!data) return;
    if (clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof data, &data, NULL) == CL_SUCCESS) {
        char tmp[600];
        snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
        FILE *f = fopen(tmp, "wb");
        if (f) {
            int ok = fwrite(data, 1, size, f) == size;
            ok = fclose(f) == 0 && ok;
            if (!ok || rename(tmp, path) != 0) remove(tmp); /* whole or nothing: concurrent inits race safely */
        }
    }
    free(data);
}

static pdc_status build_log(cl_program program, cl_device_id dev) {
    char log[400] = {0};
    size_t size = 0;
    clGetProgramBuildInfo(program, dev, CL_PROGRAM_BUILD_LOG, 0, NULL, &size);
    char *full = size ? (char *)malloc(size + 1) : NULL; /* the call fails on a buffer shorter than the log */
    if (full && clGetProgramBuildInfo(program, dev, CL_PROGRAM_BUILD_LOG, size, full, NULL) == CL_SUCCESS) {
        full[size] = 0;
        const char *first = strstr(full, "error");  /* the first error, not the warnings before it */
        snprintf(log, sizeof log, "%s", first ? first : full);
    }
    free(full);
    for (char *p = log; *p; p++)
        if (*p == '\n') *p = ' ';
    return fail("OpenCL: the kernels did not build: %s", log[0] ? log : "(the driver gave no build log)");
}

/* ---- the device ------------------------------------------------------------------------------ */
pdc_status pdc_cl_open(pdc_cl *cl, const char *source, const char *options, size_t alignment) {
    memset(cl, 0, sizeof *cl);
    last_error[0] = 0;
    cl_uint n_platforms = 0;
    cl_int e = clGetPlatformIDs(0, NULL, &n_platforms);
    if (e != CL_SUCCESS || n_platforms == 0)
        return fail("OpenCL: no platform found (install an OpenCL driver; on Debian for the CPU: "
                    "apt-get install pocl-opencl-icd)");
    cl_platform_id platforms[16];
    if (n_platforms > 16) n_platforms = 16;
    CL_CHECK(clGetPlatformIDs(n_platforms, platforms, NULL), "clGetPlatformIDs");
    int p = env_index("PDC_OPENCL_PLATFORM"), d = env_index("PDC_OPENCL_DEVICE");
    if (p < 0 || p >= (int)n_platforms)
        return fail("OpenCL: PDC_OPENCL_PLATFORM=%d, but %u platform(s) exist", p, n_platforms);
    cl_uint n_devices = 0;
    e = clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 0, NULL, &n_devices);
    if (e != CL_SUCCESS || n_devices == 0) return fail("OpenCL: platform %d has no device", p);
    cl_device_id devices[16];
    if (n_devices > 16) n_devices = 16;
    CL_CHECK(clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, n_devices, devices, NULL), "clGetDeviceIDs");
    if (d < 0 || d >= (int)n_devices)
        return fail("OpenCL: PDC_OPENCL_DEVICE=%d, but platform %d has %u device(s)", d, p, n_devices);
    cl->device = devices[d];
    cl_uint align_bits = 0;
    CL_CHECK(clGetDeviceInfo(cl->device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits, &align_bits, NULL),
             "clGetDeviceInfo");
    if (align_bits / 8 > alignment)
        return fail("OpenCL: the device aligns buffers to %u bytes, the bundle to %zu", align_bits / 8, alignment);
    cl->context = clCreateContext(NULL, 1, &cl->device, NULL, NULL, &e);
    CL_CHECK(e, "clCreateContext");
    cl->queue = clCreateCommandQueue(cl->context, cl->device, 0, &e);
    CL_CHECK(e, "clCreateCommandQueue");

    uint64_t key = fnv1a(1469598103934665603ull, source, strlen(source) + 1);
    key = device_key(cl->device, fnv1a(key, options, strlen(options) + 1));
    char path[600];
    int cached = cache_path(path, sizeof path, key);
    size_t size = 0;
    unsigned char *binary = cached ? read_file(path, &size) : NULL;
    if (binary) {
        cl_int status;
        const unsigned char *bins[1] = {binary};
        cl->program = clCreateProgramWithBinary(cl->context, 1, &cl->device, &size, bins, &status, &e);
        free(binary);
        if (e == CL_SUCCESS && status == CL_SUCCESS &&
            clBuildProgram(cl->program, 1, &cl->device, options, NULL, NULL) == CL_SUCCESS)
            return PDC_OK;
        if (cl->program) clReleaseProgram(cl->program); /* stale or foreign: build from source */
        cl->program = NULL;
    }
    cl->program = clCreateProgramWithSource(cl->context, 1, &source, NULL, &e);
    CL_CHECK(e, "clCreateProgramWithSource");
    if (clBuildProgram(cl->program, 1, &cl->device, options, NULL, NULL) != CL_SUCCESS)
        return build_log(cl->program, cl->device);
    if (cached) write_binary(cl->program, path);
    return PDC_OK;
}

void pdc_cl_close(pdc_cl *cl) {
    if (cl->queue) clFinish(cl->queue);
    if (cl->program) clReleaseProgram(cl->program);
    if (cl->queue) clReleaseCommandQueue(cl->queue);
    if (cl->context) clReleaseContext(cl->context);
    memset(cl, 0, sizeof *cl);
}

pdc_status pdc_cl_buffer(pdc_cl *cl, size_t bytes, const void *host, cl_mem *out) {
    cl_int e;
    cl_mem_flags flags = CL_MEM_READ_WRITE | (host ? CL_MEM_COPY_HOST_PTR : 0);
    *out = clCreateBuffer(cl->context, flags, bytes ? bytes : 1, (void *)host, &e);
    CL_CHECK(e, "clCreateBuffer");
    return PDC_OK;
}

pdc_status pdc_cl_sub(cl_mem parent, size_t offset, size_t bytes, cl_mem *out) {
    cl_int e;
    cl_buffer_region region = {offset, bytes ? bytes : 1};
    *out = clCreateSubBuffer(parent, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &region, &e);
    CL_CHECK(e, "clCreateSubBuffer");
    return PDC_OK;
}

pdc_status pdc_cl_kernel(pdc_cl *cl, const char *name, int count, const cl_mem *args, cl_kernel *out) {
    cl_int e;
    *out = clCreateKernel(cl->program, name, &e);
    if (e != CL_SUCCESS) return fail("OpenCL: kernel %s: %s (%d)", name, cl_error_name(e), e);
    for (int i = 0; i < count; i++) CL_CHECK(clSetKernelArg(*out, (cl_uint)i, sizeof(cl_mem), &args[i]), name);
    return PDC_OK;
}

pdc_status pdc_cl_launch(pdc_cl *cl, cl_kernel kernel, cl_uint dims, const size_t *global, const size_t *local) {
    CL_CHECK(clEnqueueNDRangeKernel(cl->queue, kernel, dims, NULL, global, local, 0, NULL, NULL),
             "clEnqueueNDRangeKernel");
    return PDC_OK;
}

pdc_status pdc_cl_write(pdc_cl *cl, cl_mem buffer, size_t offset, const void *host, size_t bytes) {
    if (!bytes) return PDC_OK;
    CL_CHECK(clEnqueueWriteBuffer(cl->queue, buffer, CL_TRUE, offset, bytes, host, 0, NULL, NULL),
             "clEnqueueWriteBuffer");
    return PDC_OK;
}

pdc_status pdc_cl_read(pdc_cl *cl, cl_mem buffer, size_t offset, void *host, size_t bytes) {
    if (!bytes) return PDC_OK;
    CL_CHECK(clEnqueueReadBuffer(cl->queue, buffer, CL_TRUE, offset, bytes, host, 0, NULL, NULL),
             "clEnqueueReadBuffer");
    return PDC_OK;
}

pdc_status pdc_cl_finish(pdc_cl *cl) {
    CL_CHECK(clFinish(cl->queue), "clFinish");
    return PDC_OK;
}
