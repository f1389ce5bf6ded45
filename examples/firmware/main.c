/* A Cortex-M firmware around a pdc bundle: tiny_cnn on a static arena (no heap), its input a fixed
 * test pattern, the class probabilities (in millionths) and the top class printed through
 * semihosting. Runs under qemu-system-arm: see CMakeLists.txt. */
#include "tiny_cnn_static.h"
#include "pdc_semihost.h"

#define PIXELS (TINY_CNN_INPUT0_BYTES / sizeof(float))
#define CLASSES (TINY_CNN_OUTPUT0_BYTES / sizeof(float))

int main(void) {
    static float image[PIXELS], probs[CLASSES];
    for (unsigned i = 0; i < PIXELS; i++) image[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    const void *inputs[1] = {image};
    void *outputs[1] = {probs};
    pdc_status s = tiny_cnn_init(0, 0);
    if (s == PDC_OK) s = tiny_cnn_invoke(inputs, outputs);
    if (s != PDC_OK) {
        pdc_sh_puts(pdc_status_string(s));
        pdc_sh_puts("\n");
        return 1;
    }
    unsigned top = 0;
    for (unsigned c = 0; c < CLASSES; c++) {
        pdc_sh_putu("class (millionths): ", (unsigned long)(probs[c] * 1e6f + 0.5f));
        if (probs[c] > probs[top]) top = c;
    }
    pdc_sh_putu("top class: ", top);
    return 0;
}
