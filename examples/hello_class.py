"""Hello world as a ``Job`` subclass, with the restart branch the manual recommends.

    python examples/hello_class.py file:my-job-store [--message TEXT] [--restart]
"""

from typing import Any

from toilray.common import Toil
from toilray.job import Job


class HelloWorld(Job):
    def __init__(self, message: str) -> None:
        Job.__init__(self, memory="1G", cores=1, disk="1G")
        self.message = message

    def run(self, fileStore: Any) -> str:
        # Also reaches the leader's log, as Toil's job.log does.
        self.log(f"Hello world, I have a message: {self.message}")
        return f"Hello, world!, here's a message: {self.message}"


def main() -> None:
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--message", default="Woot", help="The message to greet with.")
    options = parser.parse_args()

    with Toil(options) as toil:
        output = toil.restart() if toil.options.restart else toil.start(HelloWorld(options.message))
    print(output)


if __name__ == "__main__":
    main()
