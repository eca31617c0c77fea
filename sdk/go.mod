module github.com/lwm2md/lwm2md/sdk

go 1.26.0
