# pdc.mk: a model compiled by pdc in a plain Makefile. Set the variables, then include this file:
#   PDC_MODEL  = model.onnx            the model (required)
#   PDC_TARGET = x86                   any pdc target (default x86)
#   PDC_NAME   = model                 the C name of its API (default: the model file's base name)
#   PDC_OUT    = pdc/$(PDC_NAME)       the bundle folder (default)
#   PDC_FLAGS  = --quantize int8 --calibration c.npz     more pdc compile flags
#   PDC        = pdc                   the pdc command
#   include $(shell pdc --cmake-dir)/pdc.mk
# It defines PDC_LIB (the library to link: lib$(PDC_NAME).so for x86, .a for cross targets),
# PDC_HEADER (the model's header: make your objects depend on it), PDC_CFLAGS (its -I flags) and
# PDC_LDLIBS, and runs pdc again only when the model or these variables change.
# restored at the end: pdc.mk's rules do not become the including Makefile's default goal
PDC_GOAL := $(.DEFAULT_GOAL)
PDC ?= pdc
PDC_TARGET ?= x86
PDC_NAME ?= $(basename $(notdir $(PDC_MODEL)))
PDC_OUT ?= pdc/$(PDC_NAME)
ifeq ($(PDC_MODEL),)
$(error pdc.mk: set PDC_MODEL to the model file before including pdc.mk)
endif
ifneq ($(filter x86%,$(PDC_TARGET)),)
PDC_LIB := $(PDC_OUT)/lib$(PDC_NAME).so
PDC_LDLIBS := -Wl,-rpath,$(abspath $(PDC_OUT)) -lpthread -lm
else ifneq ($(filter cortex-m%,$(PDC_TARGET)),)
PDC_LIB := $(PDC_OUT)/lib$(PDC_NAME).a
PDC_LDLIBS := -lm
else
PDC_LIB := $(PDC_OUT)/lib$(PDC_NAME).a
PDC_LDLIBS := -lpthread -lm
endif
PDC_HEADER := $(PDC_OUT)/$(PDC_NAME).h
PDC_CFLAGS := -I$(PDC_OUT) -I$(PDC_OUT)/runtime
# the compile command in a file the library depends on, rewritten only when it changes
PDC_ARGS := compile $(PDC_MODEL) --target $(PDC_TARGET) --name $(PDC_NAME) -o $(PDC_OUT) -q $(PDC_FLAGS)
PDC_STAMP := $(PDC_OUT).args
$(shell mkdir -p $(dir $(PDC_OUT)) && (printf '%s\n' '$(PDC_ARGS)' | cmp -s - $(PDC_STAMP) || printf '%s\n' '$(PDC_ARGS)' > $(PDC_STAMP)))

$(PDC_LIB): $(PDC_MODEL) $(PDC_STAMP)
	$(PDC) $(PDC_ARGS)
$(PDC_HEADER): $(PDC_LIB)
.DEFAULT_GOAL := $(PDC_GOAL)
