# pdc's CMake package. Find it with
#   find_package(pdc REQUIRED)            (configure with -Dpdc_DIR="$(pdc --cmake-dir)")
# then compile a model at build time into a library target:
#   pdc_add_model(<target> MODEL <model> [TARGET <pdc target>] [NAME <C name>]
#                 [QUANTIZE int8 CALIBRATION <data.npz>] [OPTIONS <more pdc compile flags>...])
#   target_link_libraries(app PRIVATE <target>)
# <target> carries the include path of <NAME>.h (the model's C API) and pdc_runtime.h; for a Cortex-M
# target <target>_STARTUP and <target>_LINKER_SCRIPT name the bundle's startup code and linker script
# (a firmware's start: see examples/firmware). pdc runs again
# only when the model, the calibration data or the call's arguments change. The project's own
# compiler must build for the same machine as TARGET (a cross target: configure with the toolchain
# file `pdc toolchain <target> -o <file>` writes). PDC_EXECUTABLE: the pdc command (default: pdc
# on the PATH).
cmake_minimum_required(VERSION 3.18)

set(PDC_CMAKE_DIR "${CMAKE_CURRENT_LIST_DIR}")
if(NOT PDC_EXECUTABLE)
  find_program(PDC_EXECUTABLE pdc)
endif()
if(NOT PDC_EXECUTABLE)
  message(FATAL_ERROR "pdc: the pdc command is not on the PATH (pip install pdc, or set PDC_EXECUTABLE)")
endif()

function(pdc_add_model target)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "MODEL;TARGET;NAME;QUANTIZE;CALIBRATION" "OPTIONS")
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "pdc_add_model(${target}): unknown arguments: ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT ARG_MODEL)
    message(FATAL_ERROR "pdc_add_model(${target}): MODEL <model file> is required")
  endif()
  if(ARG_QUANTIZE AND NOT ARG_CALIBRATION)
    message(FATAL_ERROR "pdc_add_model(${target}): QUANTIZE ${ARG_QUANTIZE} needs CALIBRATION <data.npz>")
  endif()
  if(NOT ARG_TARGET)
    set(ARG_TARGET x86)
  endif()
  if(NOT ARG_NAME)
    string(MAKE_C_IDENTIFIER "${target}" ARG_NAME)
  endif()
  get_filename_component(model "${ARG_MODEL}" ABSOLUTE)
  if(NOT EXISTS "${model}")
    message(FATAL_ERROR "pdc_add_model(${target}): no model at ${model}")
  endif()
  set(out "${CMAKE_CURRENT_BINARY_DIR}/pdc/${target}")
  set(include "${CMAKE_CURRENT_BINARY_DIR}/pdc/${target}-include")
  file(MAKE_DIRECTORY "${include}")
  set(args compile "${model}" --target ${ARG_TARGET} --name ${ARG_NAME} -o "${out}" -q)
  set(depends "${model}")
  if(ARG_CALIBRATION)
    get_filename_component(calibration "${ARG_CALIBRATION}" ABSOLUTE)
    list(APPEND args --calibration "${calibration}")
    list(APPEND depends "${calibration}")
  endif()
  if(ARG_QUANTIZE)
    list(APPEND args --quantize ${ARG_QUANTIZE})
  endif()
  list(APPEND args ${ARG_OPTIONS})
  # the arguments in a file the build depends on: rewritten (and so re-run) only when they change
  set(stamp "${CMAKE_CURRENT_BINARY_DIR}/pdc/${target}.args")
  file(CONFIGURE OUTPUT "${stamp}" CONTENT "${PDC_EXECUTABLE};${args}\n")
  list(APPEND depends "${stamp}")
  if(ARG_TARGET MATCHES "^x86")  # the host: pdc builds a shared library
    set(kind SHARED)
    set(library "${out}/lib${ARG_NAME}.so")
  else()  # cross targets: a static library built with the target's compiler
    set(kind STATIC)
    set(library "${out}/lib${ARG_NAME}.a")
  endif()
  set(firmware)
  if(ARG_TARGET MATCHES "^cortex-m")
    set(firmware "${out}/runtime/startup.c" "${out}/link.ld")
    set(${target}_STARTUP "${out}/runtime/startup.c" PARENT_SCOPE)
    set(${target}_LINKER_SCRIPT "${out}/link.ld" PARENT_SCOPE)
  endif()
  add_custom_command(
    OUTPUT "${library}" "${include}/${ARG_NAME}.h" ${firmware}
    COMMAND ${PDC_EXECUTABLE} ${args}
    COMMAND "${CMAKE_COMMAND}" -DBUNDLE=${out} -DINCLUDE=${include} -P "${PDC_CMAKE_DIR}/pdc_headers.cmake"
    DEPENDS ${depends}
    COMMENT "pdc: compiling ${ARG_MODEL} for ${ARG_TARGET}"
    VERBATIM)
  add_custom_target(${target}_pdc DEPENDS "${library}" "${include}/${ARG_NAME}.h")
  add_library(${target} ${kind} IMPORTED GLOBAL)
  set_target_properties(${target} PROPERTIES IMPORTED_LOCATION "${library}" INTERFACE_INCLUDE_DIRECTORIES "${include}")
  if(kind STREQUAL SHARED)
    set_target_properties(${target} PROPERTIES IMPORTED_NO_SONAME TRUE)
  endif()
  if(ARG_TARGET MATCHES "^cortex-m")
    set_property(TARGET ${target} PROPERTY INTERFACE_LINK_LIBRARIES m)
  else()
    find_package(Threads REQUIRED)
    set_property(TARGET ${target} PROPERTY INTERFACE_LINK_LIBRARIES Threads::Threads m)
  endif()
  add_dependencies(${target} ${target}_pdc)
endfunction()
