"""Process entrypoints: the `tasktide` CLI, the one-process `tasktide dev`, the container's `tasktide serve`
and the API server it starts. Only this package wires the API, the functions and the router together."""
