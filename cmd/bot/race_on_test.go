//go:build race

package main

// raceBuild: the tests run with the race detector, and so does the bot
// they build (botBuild), which then reuses the packages `go test -race`
// (and `make vet`) compiled instead of compiling every one again.
const raceBuild = true
