"""Hello world as a function job (the manual's quick start).

    python examples/hello_function.py file:my-job-store [--message TEXT]

The resource requirements come from the wrapped function's own keyword defaults, so the job
asks for 1G of memory, 1 core and 1G of disk although ``wrapFn`` is given none of them.
"""

from toilray.common import Toil
from toilray.job import Job


def helloWorld(message: str, memory: str = "1G", cores: int = 1, disk: str = "1G") -> str:
    return f"Hello, world!, here's a message: {message}"


def main() -> None:
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--message", default="You did it!", help="The message to greet with.")
    options = parser.parse_args()
    options.clean = "always"

    hello_job = Job.wrapFn(helloWorld, options.message)
    with Toil(options) as toil:
        output = toil.restart() if options.restart else toil.start(hello_job)
    print(output)
    # The requirements the job was scheduled with, read back from the job object.
    print(f"requirements: memory={hello_job.memory} cores={hello_job.cores:g} disk={hello_job.disk}")


if __name__ == "__main__":
    main()
