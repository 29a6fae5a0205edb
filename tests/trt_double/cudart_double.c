/* A test double of the CUDA runtime library (libcudart), for tests only: the subset edgeres_deploy/cudart.py calls,
 * over host memory. A test fixture compiles it with gcc into libcudart.so.<major> (tests/trt_double/__init__.py,
 * build_cudart_double); nothing in the product loads it unless a test puts it on LD_LIBRARY_PATH or passes its path.
 *
 * Faithful to the documented C API (CUDA Runtime API reference, docs.nvidia.com/cuda/cuda-runtime-api, and the
 * values of driver_types.h):
 *   - every call returns cudaError_t; cudaSuccess 0, cudaErrorInvalidValue 1, cudaErrorMemoryAllocation 2,
 *     cudaErrorInvalidMemcpyDirection 21, cudaErrorInsufficientDriver 35, cudaErrorInvalidDevice 101,
 *     cudaErrorInvalidResourceHandle 400; cudaGetErrorName / cudaGetErrorString give the names the real library gives
 *     (tests compare them with the real libcudart.so.13 of the nvidia-cuda-runtime wheel) and "unrecognized error
 *     code" for anything else, as the real library does;
 *   - cudaFree(NULL) and cudaFreeHost(NULL) do nothing and succeed; freeing an address that was not allocated is
 *     cudaErrorInvalidValue;
 *   - cudaMemcpyAsync(dst, src, count, kind, stream): kind cudaMemcpyHostToDevice = 1 needs dst inside a device
 *     allocation, cudaMemcpyDeviceToHost = 2 needs src inside one (else cudaErrorInvalidValue); another kind is
 *     cudaErrorInvalidMemcpyDirection; a stream that was not created (nor 0, the legacy default stream) is
 *     cudaErrorInvalidResourceHandle;
 *   - cudaHostAlloc(ptr, size, flags): flags a combination of cudaHostAllocDefault 0, Portable 1, Mapped 2,
 *     WriteCombined 4, else cudaErrorInvalidValue;
 *   - cudaEventElapsedTime(ms, start, end): cudaErrorInvalidResourceHandle when either event was never recorded
 *     ("If cudaEventRecord() has not been called on either event", cudaEventElapsedTime reference);
 *   - cudaGetDeviceProperties(prop, device): prop->name (char[256], the first field of cudaDeviceProp) is filled;
 *     device != 0 is cudaErrorInvalidDevice.
 * Device memory is host memory here: the TensorRT double (tests/trt_double/__init__.py) reads and writes it, and asks
 * edgeres_double_is_device() whether an address it is given lies in a device allocation (a real GPU faults on a host
 * pointer passed as a device one: cudaErrorIllegalAddress).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef CUDART_VERSION
#define CUDART_VERSION 13000
#endif
#define MAX_BLOCKS 4096

typedef int cudaError_t;
enum { OK = 0, INVALID_VALUE = 1, ALLOCATION = 2, MEMCPY_DIRECTION = 21, INVALID_DEVICE = 101, RESOURCE_HANDLE = 400 };

typedef struct { void *p; size_t n; } block_t;
static block_t device_blocks[MAX_BLOCKS], host_blocks[MAX_BLOCKS];
static size_t device_used;
static const size_t device_total = (size_t)8 << 30;

typedef struct { int alive; int recorded; double t; } event_t;
typedef struct { int alive; } stream_t;

static int add(block_t *t, void *p, size_t n) {
    for (int i = 0; i < MAX_BLOCKS; i++)
        if (!t[i].p) { t[i].p = p; t[i].n = n; return 1; }
    return 0;
}

static block_t *find(block_t *t, const void *p) {
    for (int i = 0; i < MAX_BLOCKS; i++)
        if (t[i].p == p) return &t[i];
    return NULL;
}

int edgeres_double_is_device(const void *p, size_t n) {
    const char *c = (const char *)p;
    for (int i = 0; i < MAX_BLOCKS; i++) {
        const char *b = (const char *)device_blocks[i].p;
        if (b && c >= b && c + n <= b + device_blocks[i].n) return 1;
    }
    return 0;
}

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case OK: return "cudaSuccess";
    case INVALID_VALUE: return "cudaErrorInvalidValue";
    case ALLOCATION: return "cudaErrorMemoryAllocation";
    case MEMCPY_DIRECTION: return "cudaErrorInvalidMemcpyDirection";
    case 35: return "cudaErrorInsufficientDriver";
    case INVALID_DEVICE: return "cudaErrorInvalidDevice";
    case RESOURCE_HANDLE: return "cudaErrorInvalidResourceHandle";
    default: return "unrecognized error code";
    }
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case OK: return "no error";
    case INVALID_VALUE: return "invalid argument";
    case ALLOCATION: return "out of memory";
    case MEMCPY_DIRECTION: return "invalid copy direction for memcpy";
    case 35: return "CUDA driver version is insufficient for CUDA runtime version";
    case INVALID_DEVICE: return "invalid device ordinal";
    case RESOURCE_HANDLE: return "invalid resource handle";
    default: return "unrecognized error code";
    }
}

cudaError_t cudaGetDeviceCount(int *count) { if (!count) return INVALID_VALUE; *count = 1; return OK; }
cudaError_t cudaRuntimeGetVersion(int *v) { if (!v) return INVALID_VALUE; *v = CUDART_VERSION; return OK; }
cudaError_t cudaDriverGetVersion(int *v) { if (!v) return INVALID_VALUE; *v = CUDART_VERSION; return OK; }

cudaError_t cudaGetDeviceProperties(void *prop, int device) {
    if (!prop) return INVALID_VALUE;
    if (device != 0) return INVALID_DEVICE;
    memset(prop, 0, 256);
    strcpy((char *)prop, "Double GPU");
    return OK;
}

cudaError_t cudaMalloc(void **p, size_t n) {
    if (!p) return INVALID_VALUE;
    void *m = calloc(1, n ? n : 1);
    if (!m || !add(device_blocks, m, n)) { free(m); return ALLOCATION; }
    device_used += n;
    *p = m;
    return OK;
}

cudaError_t cudaFree(void *p) {
    if (!p) return OK;
    block_t *b = find(device_blocks, p);
    if (!b) return INVALID_VALUE;
    device_used -= b->n;
    free(b->p);
    b->p = NULL;
    return OK;
}

cudaError_t cudaHostAlloc(void **p, size_t n, unsigned int flags) {
    if (!p || (flags & ~7u)) return INVALID_VALUE;
    void *m = calloc(1, n ? n : 1);
    if (!m || !add(host_blocks, m, n)) { free(m); return ALLOCATION; }
    *p = m;
    return OK;
}

cudaError_t cudaMallocHost(void **p, size_t n) { return cudaHostAlloc(p, n, 0); }

cudaError_t cudaFreeHost(void *p) {
    if (!p) return OK;
    block_t *b = find(host_blocks, p);
    if (!b) return INVALID_VALUE;
    free(b->p);
    b->p = NULL;
    return OK;
}

cudaError_t cudaMemGetInfo(size_t *free_, size_t *total) {
    if (!free_ || !total) return INVALID_VALUE;
    *free_ = device_total - device_used;
    *total = device_total;
    return OK;
}

cudaError_t cudaStreamCreate(void **s) {
    if (!s) return INVALID_VALUE;
    stream_t *st = calloc(1, sizeof(stream_t));
    if (!st) return ALLOCATION;
    st->alive = 1;
    *s = st;
    return OK;
}

static int stream_ok(void *s) { return s == NULL || ((stream_t *)s)->alive == 1; }

cudaError_t cudaStreamSynchronize(void *s) { return stream_ok(s) ? OK : RESOURCE_HANDLE; }

cudaError_t cudaStreamDestroy(void *s) {
    if (!s || !stream_ok(s)) return RESOURCE_HANDLE;
    ((stream_t *)s)->alive = 0;
    free(s);
    return OK;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, int kind, void *stream) {
    if (!stream_ok(stream)) return RESOURCE_HANDLE;
    if (kind == 1) { if (!edgeres_double_is_device(dst, n)) return INVALID_VALUE; }
    else if (kind == 2) { if (!edgeres_double_is_device(src, n)) return INVALID_VALUE; }
    else return MEMCPY_DIRECTION;
    if (!dst || !src) return INVALID_VALUE;
    memmove(dst, src, n);
    return OK;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

cudaError_t cudaEventCreateWithFlags(void **e, unsigned int flags) {
    if (!e || (flags & ~7u)) return INVALID_VALUE;
    event_t *ev = calloc(1, sizeof(event_t));
    if (!ev) return ALLOCATION;
    ev->alive = 1;
    *e = ev;
    return OK;
}

cudaError_t cudaEventCreate(void **e) { return cudaEventCreateWithFlags(e, 0); }

cudaError_t cudaEventRecord(void *e, void *stream) {
    if (!e || ((event_t *)e)->alive != 1 || !stream_ok(stream)) return RESOURCE_HANDLE;
    ((event_t *)e)->recorded = 1;
    ((event_t *)e)->t = now_ms();
    return OK;
}

cudaError_t cudaEventSynchronize(void *e) { return (e && ((event_t *)e)->alive == 1) ? OK : RESOURCE_HANDLE; }

cudaError_t cudaEventElapsedTime(float *ms, void *start, void *end) {
    if (!ms) return INVALID_VALUE;
    event_t *a = start, *b = end;
    if (!a || !b || a->alive != 1 || b->alive != 1 || !a->recorded || !b->recorded) return RESOURCE_HANDLE;
    *ms = (float)(b->t - a->t);
    return OK;
}

cudaError_t cudaEventDestroy(void *e) {
    if (!e || ((event_t *)e)->alive != 1) return RESOURCE_HANDLE;
    ((event_t *)e)->alive = 0;
    free(e);
    return OK;
}
