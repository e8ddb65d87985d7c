"""Task execution back ends of the WDL runner (the interface is toilray.wdl.backend)."""
