# run_fuzzer.cmake -- one ctest fuzzing run: copies the seed corpus into WORKDIR (the
# repository's corpus is never written), runs FUZZER on the copy for SECONDS seconds and
# fails when it finds a crash, a leak, a timeout or an out-of-memory input; the input that
# did is kept in WORKDIR/artifacts/.
foreach(v FUZZER CORPUS WORKDIR SECONDS)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run_fuzzer.cmake: -D${v}= missing")
  endif()
endforeach()

file(REMOVE_RECURSE ${WORKDIR}/corpus)
file(MAKE_DIRECTORY ${WORKDIR}/corpus ${WORKDIR}/artifacts)
file(GLOB seeds ${CORPUS}/*)
if(seeds)
  file(COPY ${seeds} DESTINATION ${WORKDIR}/corpus)
endif()

set(dict_arg)
if(DEFINED DICT AND EXISTS ${DICT})
  set(dict_arg -dict=${DICT})
endif()

execute_process(
  COMMAND ${FUZZER} -max_total_time=${SECONDS} -timeout=10 -rss_limit_mb=2048
          -print_final_stats=1 ${dict_arg} -artifact_prefix=${WORKDIR}/artifacts/
          ${WORKDIR}/corpus
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${FUZZER} failed (${rc}): the input is in ${WORKDIR}/artifacts/")
endif()
