"""The CWL runner: cwltool on the toilray engine (``toilray-cwl-runner``)."""
