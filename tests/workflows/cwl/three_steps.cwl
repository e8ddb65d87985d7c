cwlVersion: v1.2
class: Workflow
doc: first -> second -> third; second fails while the file named by fail_flag exists.
inputs:
  count_dir: string
  fail_flag: string
outputs:
  final: {type: File, outputSource: third/out}
steps:
  first:
    run: step.cwl
    in: {name: {default: first}, count_dir: count_dir, fail_flag: {default: /nonexistent/flag}}
    out: [out]
  second:
    run: step.cwl
    in: {name: {default: second}, count_dir: count_dir, fail_flag: fail_flag, prev: first/out}
    out: [out]
  third:
    run: step.cwl
    in: {name: {default: third}, count_dir: count_dir, fail_flag: {default: /nonexistent/flag}, prev: second/out}
    out: [out]
