//go:build !unix

package main

func processCPU() int64    { return -1 }
func peakRSSKB() int64     { return -1 }
func rssKB() int64         { return -1 }
func hostBusyCPU() int64   { return -1 }
func writeSyscalls() int64 { return -1 }
