module github.com/lwm2md/lwm2md/ddf

go 1.26.0
