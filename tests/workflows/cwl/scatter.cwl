cwlVersion: v1.2
class: Workflow
doc: One tool invocation per item, gathered back in order.
requirements:
  ScatterFeatureRequirement: {}
inputs:
  items: int[]
  log_dir: string
outputs:
  results: {type: "int[]", outputSource: record/out}
steps:
  record:
    run: record.cwl
    scatter: item
    in: {item: items, log_dir: log_dir}
    out: [out]
