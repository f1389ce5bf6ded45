/* pdc Hexagon: <string.h> for a freestanding build (no C library). The compiler runtime the bundle is
 * linked with (or the DSP SDK's) provides these. */
#ifndef PDC_HEXAGON_STRING_H
#define PDC_HEXAGON_STRING_H
#include <stddef.h>
void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
#endif
