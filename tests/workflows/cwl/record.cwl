cwlVersion: v1.2
class: CommandLineTool
doc: Writes when it started and ended (for the overlap check), then echoes its item.
requirements:
  InlineJavascriptRequirement: {}
  ResourceRequirement: {coresMin: 1}
baseCommand: [sh, -c]
arguments:
  - 'printf "%s %s " "$0" "`date +%s.%N`" > "$1/$0"; sleep 0.2; date +%s.%N >> "$1/$0"; echo "$0"'
inputs:
  item: {type: int, inputBinding: {position: 1}}
  log_dir: {type: string, inputBinding: {position: 2}}
stdout: out.txt
outputs:
  out:
    type: int
    outputBinding:
      glob: out.txt
      loadContents: true
      outputEval: $(parseInt(self[0].contents))
