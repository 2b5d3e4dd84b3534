# Helpers shared by the benchmark scripts (sourced, not run). Each script sets $work first.
#
#   measure LABEL COMMAND...   runs COMMAND under GNU time (after a sync, so earlier writes are
#                              flushed) and appends "seconds peak_rss_kib" to $work/LABEL
#   median < FILE              the median of the first column
#   col N LABEL                the median of column N of $work/LABEL

measure() {
  local label=$1; shift
  sync
  /usr/bin/time -f "%e %M" -o "$work/t" "$@" >/dev/null 2>"$work/err" || { cat "$work/err"; exit 1; }
  cat "$work/t" >>"$work/$label"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { cut -d' ' -f"$1" "$work/$2" | median; }
