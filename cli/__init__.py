"""The `servescope` command line and the demo: the top layer, above every package.

`cli.main` dispatches to each package's own subcommand module (imported only when its subcommand runs);
`cli.demo` runs export, campaign and analysis end to end. Nothing below imports from here.
"""
