#!/usr/bin/env cwl-runner
# Reports what the tool sees: the container's hostname (its container ID), the path its input
# is mounted at, whether it can write to that input, a file of its input directory, and whether
# a path of the host is visible.
cwlVersion: v1.2
class: CommandLineTool
requirements:
  DockerRequirement:
    dockerPull: debian:stable-slim
  ShellCommandRequirement: {}
inputs:
  data: File
  tree: Directory
  host_path: string
outputs:
  report: stdout
  copy:
    type: File
    outputBinding: {glob: copy.txt}
stdout: report.txt
arguments:
  - shellQuote: false
    valueFrom: >-
      echo "hostname `cat /etc/hostname`";
      echo "staged $(inputs.data.path)";
      if (echo x >> $(inputs.data.path)) 2>/dev/null; then echo "input writable"; else echo "input read-only"; fi;
      echo "tree `cat $(inputs.tree.path)/sub/b.txt`";
      if test -e $(inputs.host_path); then echo "host path visible"; else echo "host path absent"; fi;
      cp $(inputs.data.path) copy.txt
