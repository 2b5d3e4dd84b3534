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

# bench_fs BASE GIB   prints the directory the benchmark should work in. Run as root with
#                     mkfs.ext4 at hand (and EXARCH_BENCH_FS not set to "host"), it is BASE/fs, a
#                     fresh ext4 file system with a journal, as distributions make them, in a
#                     preallocated GIB GiB image under BASE: the development VM's root file system
#                     has no journal, and there ext4 checks every candidate inode for a recent
#                     deletion, which after one restore's deletions took 40% of the next restore's
#                     time for every tool alike. The loop device uses direct I/O, so that its
#                     data is cached once, as a disk's is. Otherwise BASE itself. Pair with
#                     bench_fs_done.
bench_fs() {
  local base=$1 gib=$2
  if [ "${EXARCH_BENCH_FS:-ext4}" = ext4 ] && [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null &&
    fallocate -l "${gib}G" "$base/fs.img" && mkfs.ext4 -q -F -i 4096 "$base/fs.img" && mkdir -p "$base/fs" &&
    local dev && dev=$(losetup -f --show --direct-io=on "$base/fs.img") && mount "$dev" "$base/fs"; then
    echo "$base/fs"
  else
    rm -f "$base/fs.img"
    echo "$base"
  fi
}
# bench_fs_done BASE  unmounts what bench_fs mounted and removes BASE.
bench_fs_done() {
  local dev; dev=$(findmnt -n -o SOURCE --target "$1/fs" 2>/dev/null || true)
  umount "$1/fs" 2>/dev/null && case "$dev" in /dev/loop*) losetup -d "$dev" 2>/dev/null ;; esac
  rm -rf "$1"
}
# cold                before a restore: what is written is flushed and, as root, the page cache
#                     dropped, so every tool reads its repository from the disk, as a restore of
#                     last week's backup does.
cold() {
  sync
  if [ "$(id -u)" = 0 ]; then echo 3 >/proc/sys/vm/drop_caches; fi
}
# warm DIR            before a backup: DIR's files in the page cache, the same for every tool.
warm() {
  find "$1" -type f -exec cat {} + >/dev/null
}
# fs_note DIR         one line saying what DIR's file system is.
fs_note() {
  echo "working file system: $(findmnt -n -o FSTYPE,SOURCE,OPTIONS --target "$1" | tr -s ' ')"
}
