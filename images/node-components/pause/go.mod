module sluice.dev/images/node-components/pause

go 1.24.0
