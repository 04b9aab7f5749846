module riposte.dev/test-node

go 1.23
