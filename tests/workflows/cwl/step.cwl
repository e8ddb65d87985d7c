cwlVersion: v1.2
class: CommandLineTool
doc: Counts its own runs in count_dir, fails while fail_flag exists, appends its name to prev.
baseCommand: [sh, -c]
arguments:
  - 'echo run >> "$1/$0"; if [ -e "$2" ]; then echo "injected failure in $0" >&2; exit 3; fi; if [ -n "$3" ]; then cat "$3"; fi; echo "$0"'
inputs:
  name: {type: string, inputBinding: {position: 1}}
  count_dir: {type: string, inputBinding: {position: 2}}
  fail_flag: {type: string, inputBinding: {position: 3}}
  prev: {type: "File?", inputBinding: {position: 4}}
stdout: out.txt
outputs:
  out: {type: stdout}
