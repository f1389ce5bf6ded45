/* A C application around a pdc bundle: runs tiny_cnn (examples/tiny_cnn.onnx, compiled by pdc) on
 * a fixed test pattern and prints the class probabilities and the top class. Built for the host or,
 * cross-compiled, for ARM Linux (run under qemu): see the Makefile and ../cmake. */
#include <stdio.h>
#include <stdlib.h>
#include "tiny_cnn.h"

#define PIXELS (TINY_CNN_INPUT0_BYTES / sizeof(float))
#define CLASSES (TINY_CNN_OUTPUT0_BYTES / sizeof(float))

int main(void) {
    static float image[PIXELS], probs[CLASSES];
    for (size_t i = 0; i < PIXELS; i++) image[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    void *arena = aligned_alloc(64, (TINY_CNN_ARENA_BYTES + 63) / 64 * 64);
    const void *inputs[1] = {image};
    void *outputs[1] = {probs};
    pdc_status s = arena ? tiny_cnn_init(NULL, 0) : PDC_ERR_NULL_ARGUMENT;
    if (s == PDC_OK) s = tiny_cnn_run(arena, inputs, outputs);
    if (s != PDC_OK) {
        fprintf(stderr, "tiny_cnn: %s\n", pdc_status_string(s));
        return 1;
    }
    size_t top = 0;
    for (size_t c = 0; c < CLASSES; c++) {
        printf("class %zu: %.6f\n", c, probs[c]);
        if (probs[c] > probs[top]) top = c;
    }
    printf("top class: %zu\n", top);
    tiny_cnn_shutdown();
    free(arena);
    return 0;
}
