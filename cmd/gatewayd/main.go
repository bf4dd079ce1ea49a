// Command gatewayd is the air-gapped request-and-approval gateway for health records.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
