"""The WDL runner: miniwdl as the language library, toilray's engine running the tasks."""
