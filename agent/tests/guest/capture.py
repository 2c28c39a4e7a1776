#!/usr/bin/env python3
"""Prints one line per UDP packet to or from a port seen on an interface (AF_PACKET): the
payload's length and its first four bytes in hex. Runs until stopped."""
import socket
import struct
import sys

iface, port = sys.argv[1], int(sys.argv[2])
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
sock.bind((iface, 0))
print("capturing", flush=True)
while True:
    frame = sock.recv(65535)
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        continue
    ip = frame[14:]
    if ip[9] != 17:
        continue
    udp = ip[(ip[0] & 0x0F) * 4:]
    sport, dport, length = struct.unpack("!HHH", udp[:6])
    if port not in (sport, dport):
        continue
    payload = udp[8:length]
    print(len(payload), payload[:4].hex(), flush=True)
