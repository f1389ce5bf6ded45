/* pdc Hexagon: the few Linux system calls the bundle's test harness makes (trap0(#1), the call number in
 * r6, arguments in r0..r5), so that it runs under qemu-hexagon with no C library. Not needed by the
 * model itself, which does no I/O. */
#ifndef PDC_HEXAGON_SYS_H
#define PDC_HEXAGON_SYS_H
#include <stddef.h>

enum { PDC_SYS_OPENAT = 56, PDC_SYS_CLOSE = 57, PDC_SYS_READ = 63, PDC_SYS_WRITE = 64, PDC_SYS_EXIT_GROUP = 94 };
enum { PDC_AT_FDCWD = -100, PDC_O_RDONLY = 0, PDC_O_WRONLY_CREAT_TRUNC = 01 | 0100 | 01000 };

static inline long pdc_sys4(long n, long a, long b, long c, long d) {
    register long r0 __asm__("r0") = a, r1 __asm__("r1") = b, r2 __asm__("r2") = c, r3 __asm__("r3") = d;
    register long r6 __asm__("r6") = n;
    __asm__ volatile("trap0(#1)" : "+r"(r0) : "r"(r1), "r"(r2), "r"(r3), "r"(r6) : "memory");
    return r0;
}
static inline size_t pdc_strlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}
static inline void pdc_puts(int fd, const char *s) { pdc_sys4(PDC_SYS_WRITE, fd, (long)s, (long)pdc_strlen(s), 0); }
static inline int pdc_open(const char *path, int write) {
    return (int)pdc_sys4(PDC_SYS_OPENAT, PDC_AT_FDCWD, (long)path, write ? PDC_O_WRONLY_CREAT_TRUNC : PDC_O_RDONLY,
                         0644);
}
static inline void pdc_close(int fd) { pdc_sys4(PDC_SYS_CLOSE, fd, 0, 0, 0); }
/* reads exactly n bytes unless the file ends first: the bytes read, or -1 on an error */
static inline long pdc_read_all(int fd, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        long r = pdc_sys4(PDC_SYS_READ, fd, (long)((char *)buf + got), (long)(n - got), 0);
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (long)got;
}
static inline int pdc_write_all(int fd, const void *buf, size_t n) {
    size_t put = 0;
    while (put < n) {
        long r = pdc_sys4(PDC_SYS_WRITE, fd, (long)((const char *)buf + put), (long)(n - put), 0);
        if (r <= 0) return -1;
        put += (size_t)r;
    }
    return 0;
}
static inline __attribute__((noreturn)) void pdc_exit(int code) {
    pdc_sys4(PDC_SYS_EXIT_GROUP, code, 0, 0, 0);
    for (;;) {}
}
#endif
