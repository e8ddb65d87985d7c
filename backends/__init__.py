"""Parts of toilray that talk to the outside world: storage services and schedulers."""
