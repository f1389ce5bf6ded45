# cmake -DBUNDLE=<bundle> -DINCLUDE=<folder> -P pdc_headers.cmake: copies a bundle's public headers
# (the model's, the runtime's) into the include folder of pdc_add_model's target.
file(GLOB headers "${BUNDLE}/*.h" "${BUNDLE}/runtime/*.h")
list(FILTER headers EXCLUDE REGEX "_kernels\\.h$|pdc_kernels_common\\.h$")
file(COPY ${headers} DESTINATION "${INCLUDE}")
