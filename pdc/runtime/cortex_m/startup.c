/* pdc Cortex-M startup: the vector table and the reset handler of a bare-metal image (no OS,
 * no heap, no C library start-up code). Reset copies .data from flash, clears .bss, turns the
 * FPU on where there is one, paints the free stack (so the harness can measure its use) and
 * calls main. Faults print a line through semihosting and exit with code 3 instead of hanging. */
#include <stdint.h>
#include "pdc_semihost.h"

extern uint32_t __stack_top, _sidata, _sdata, _edata, __bss_start__, __bss_end__;
int main(void);

#define PDC_STACK_PAINT 0xA5A5A5A5u

void Reset_Handler(void) {
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20; /* CPACR: full access to CP10 and CP11 */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    /* word loops through volatile pointers: gcc would otherwise turn them into calls to the C
       library's memcpy / memset, which a model that needs neither then carries (~470 bytes) */
    const uint32_t *src = &_sidata;
    for (volatile uint32_t *d = &_sdata; d < &_edata;) *d++ = *src++;
    for (volatile uint32_t *d = &__bss_start__; d < &__bss_end__;) *d++ = 0;
    uint32_t *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (volatile uint32_t *d = &__bss_end__; d < sp - 16;) *d++ = PDC_STACK_PAINT;
    pdc_sh_exit(main());
}

/* bytes of stack used so far: the painted words that were overwritten */
unsigned long pdc_stack_used(void) {
    const uint32_t *p = &__bss_end__;
    while (p < &__stack_top && *p == PDC_STACK_PAINT) p++;
    return (unsigned long)((const uint8_t *)&__stack_top - (const uint8_t *)p);
}

void Fault_Handler(void) {
    pdc_sh_puts("pdc: hard fault (stack overflow or bad memory access)\n");
    pdc_sh_exit(3);
}
void Default_Handler(void) {
    pdc_sh_puts("pdc: unexpected interrupt\n");
    pdc_sh_exit(3);
}

__attribute__((section(".vectors"), used)) void (*const pdc_vectors[16])(void) = {
    (void (*)(void))&__stack_top, Reset_Handler,
    Default_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler, /* NMI, Hard, Mem, Bus, Usage */
    0, 0, 0, 0, Default_Handler, Default_Handler, 0, Default_Handler, Default_Handler};
