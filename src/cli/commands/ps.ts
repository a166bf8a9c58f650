import type { Command } from 'commander'

// TODO(cli): `edgestar ps` is not implemented yet; its owner replaces this file.
export function register(_program: Command): void {}
