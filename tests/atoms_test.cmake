# No two message atoms share a text: an actor handed an atom it knows by
# another meaning would take one message for another (or drop it as
# unexpected). Reads every `atom_constant<caf::atom("...")>` in the sources
# (libnetchan, apps, tests, fuzz, support). CAF's own atoms are plain words;
# netchan's start with "nc_" (the benchmark's with "b_").
# Input: SOURCE_DIR.
file(GLOB_RECURSE sources
     "${SOURCE_DIR}/libnetchan/*.hpp" "${SOURCE_DIR}/libnetchan/*.cpp"
     "${SOURCE_DIR}/libnetchan/*.in"
     "${SOURCE_DIR}/apps/*.hpp" "${SOURCE_DIR}/apps/*.cpp"
     "${SOURCE_DIR}/tests/*.hpp" "${SOURCE_DIR}/tests/*.cpp"
     "${SOURCE_DIR}/fuzz/*.hpp" "${SOURCE_DIR}/fuzz/*.cpp"
     "${SOURCE_DIR}/support/*.hpp" "${SOURCE_DIR}/support/*.cpp")

set(pattern "atom_constant<(caf::)?atom\\(\"([^\"]*)\"\\)>")
set(texts "")
set(wheres "")
set(clashes "")
foreach(file IN LISTS sources)
  file(STRINGS "${file}" lines REGEX "${pattern}")
  foreach(line IN LISTS lines)
    string(REGEX MATCH "${pattern}" match "${line}")
    set(text "${CMAKE_MATCH_2}")
    file(RELATIVE_PATH where "${SOURCE_DIR}" "${file}")
    list(FIND texts "${text}" seen)
    if(seen GREATER_EQUAL 0)
      list(GET wheres ${seen} first)
      string(APPEND clashes "\n  \"${text}\": ${first} and ${where}")
    endif()
    list(APPEND texts "${text}")
    list(APPEND wheres "${where}")
  endforeach()
endforeach()

list(LENGTH texts count)
if(count LESS 40)
  message(FATAL_ERROR "found only ${count} atoms: has the way atoms are "
                      "declared changed? (pattern ${pattern})")
endif()
if(clashes)
  message(FATAL_ERROR "atoms sharing a text:${clashes}")
endif()
message(STATUS "${count} atoms, all distinct")
