"""What is measured: traces and workloads, named experiment configs, the runner, CLI and reports."""
