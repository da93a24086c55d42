# shellcheck shell=bash disable=SC2034 # `rebuild` is read by the script that sources this
# The command line of Sluice's build scripts: `[--rebuild]`, or `--help` (prints the script's header comment).
# Source it, then call `parse_rebuild_arg SCRIPT_NAME "$@"`; it sets `rebuild` to true or false.

parse_rebuild_arg() {
  local name=$1
  shift
  rebuild=false
  case "${1:-}" in
    "") ;;
    --rebuild) rebuild=true ;;
    -h | --help)
      awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
      exit 0
      ;;
    *)
      echo "$name: error: unknown argument '$1'; accepted: --rebuild, --help" >&2
      exit 2
      ;;
  esac
}
