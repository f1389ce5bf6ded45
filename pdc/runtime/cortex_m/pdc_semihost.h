/* pdc Cortex-M: ARM semihosting calls (BKPT 0xAB) for the bundle's test harness: host files,
 * console text and the exit code, through the debugger or emulator (qemu -semihosting).
 * Not needed by the model itself, which does no I/O. */
#ifndef PDC_SEMIHOST_H
#define PDC_SEMIHOST_H
#include <stddef.h>
#include <stdint.h>

static inline int pdc_sh_call(int op, const void *arg) {
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}
/* read through a volatile pointer so that gcc does not call the C library's strlen (220 bytes) */
static inline size_t pdc_sh_strlen(const char *s) {
    const volatile char *p = s;
    size_t n = 0;
    while (p[n]) n++;
    return n;
}
/* mode: 1 = "rb", 5 = "wb" */
static inline int pdc_sh_open(const char *path, int mode) {
    const uintptr_t a[3] = {(uintptr_t)path, (uintptr_t)mode, (uintptr_t)pdc_sh_strlen(path)};
    return pdc_sh_call(0x01, a);
}
static inline void pdc_sh_close(int fd) { const uintptr_t a[1] = {(uintptr_t)fd}; pdc_sh_call(0x02, a); }
/* both return the number of bytes NOT transferred (0: all of them) */
static inline int pdc_sh_write(int fd, const void *buf, size_t n) {
    const uintptr_t a[3] = {(uintptr_t)fd, (uintptr_t)buf, (uintptr_t)n};
    return pdc_sh_call(0x05, a);
}
static inline int pdc_sh_read(int fd, void *buf, size_t n) {
    const uintptr_t a[3] = {(uintptr_t)fd, (uintptr_t)buf, (uintptr_t)n};
    return pdc_sh_call(0x06, a);
}
static inline long pdc_sh_flen(int fd) { const uintptr_t a[1] = {(uintptr_t)fd}; return pdc_sh_call(0x0C, a); }
static inline void pdc_sh_puts(const char *s) { pdc_sh_call(0x04, s); }
static inline void pdc_sh_putu(const char *label, unsigned long v) {
    char buf[24];
    int i = (int)sizeof buf - 1;
    buf[i] = 0;
    do { buf[--i] = (char)('0' + v % 10); v /= 10; } while (v && i > 0);
    pdc_sh_puts(label);
    pdc_sh_puts(buf + i);
    pdc_sh_puts("\n");
}
/* ends the program: the emulator exits with `code` (SYS_EXIT_EXTENDED, ADP_Stopped_ApplicationExit) */
static inline void pdc_sh_exit(int code) {
    const uintptr_t a[2] = {0x20026, (uintptr_t)code};
    pdc_sh_call(0x20, a);
    pdc_sh_call(0x18, (const void *)(uintptr_t)(code ? 0x20024 : 0x20026)); /* hosts without the extension */
    for (;;) {
    }
}
#endif
