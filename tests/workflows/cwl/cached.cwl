cwlVersion: v1.2
class: Workflow
doc: Two tools read one input each; a third reads the second's output. Each counts its runs in count_dir.
inputs:
  count_dir: string
  a: File
  b: File
outputs:
  fromA: {type: File, outputSource: useA/out}
  joined: {type: File, outputSource: join/out}
steps:
  useA:
    run: step.cwl
    in: {name: {default: useA}, count_dir: count_dir, fail_flag: {default: /nonexistent/flag}, prev: a}
    out: [out]
  useB:
    run: step.cwl
    in: {name: {default: useB}, count_dir: count_dir, fail_flag: {default: /nonexistent/flag}, prev: b}
    out: [out]
  join:
    run: step.cwl
    in: {name: {default: join}, count_dir: count_dir, fail_flag: {default: /nonexistent/flag}, prev: useB/out}
    out: [out]
