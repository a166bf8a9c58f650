import { spawn } from 'node:child_process'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { constants } from 'node:os'
import path from 'node:path'
import { EdgestarError } from '../errors.js'
import type { LaunchRequest } from './oci-bundle.js'
import type { ContainerRuntime, ProcessExit, RunningProcess } from './runtime.js'

const DEVICES = ['null', 'zero', 'full', 'random', 'urandom', 'tty']

/**
 * The fallback when no OCI runtime is installed: `unshare` gives the process its own
 * mount and pid namespaces (and a network namespace for `none`), a shell in that
 * namespace mounts /dev nodes and the binds, then `unshare --root --wd --setuid`
 * enters the root filesystem as the image's user. No cgroups, no seccomp, no
 * capability dropping: weaker isolation than runc, said in the docs.
 */
export class ChrootRuntime implements ContainerRuntime {
  readonly kind = 'chroot' as const

  async launch(req: LaunchRequest): Promise<RunningProcess> {
    await this.cleanup(req.id, req.containerDir)
    const root = req.rootDir
    const args = [
      '--mount',
      '--propagation',
      'private',
      '--pid',
      '--fork',
      '--kill-child',
      `--mount-proc=${path.join(root, 'proc')}`,
      ...(req.network === 'none' ? ['--net'] : []),
      '--',
      '/bin/sh',
      '-c',
      setupScript(req),
      'edgestar-setup',
      ...req.process.args,
    ]
    const child = spawn('unshare', args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      env: Object.fromEntries(
        req.process.env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]),
      ),
    })
    const spawned = await new Promise<Error | undefined>((resolve) => {
      child.once('spawn', () => resolve(undefined))
      child.once('error', (err) => resolve(err))
    })
    if (spawned !== undefined) {
      throw new EdgestarError(
        'EDGESTAR_RUNTIME_START_FAILED',
        `could not run unshare: ${spawned.message}`,
        {
          cause: spawned,
          hint: 'install util-linux (unshare) or runc',
        },
      )
    }

    const pidFile = path.join(req.containerDir, 'chroot.pid')
    await writeFile(pidFile, `${child.pid}\n`)
    const exited = new Promise<ProcessExit>((resolve) => {
      child.once('exit', (code, signal) => {
        const exitCode = code ?? 128 + (signal === null ? 0 : (constants.signals[signal] ?? 0))
        void rm(pidFile, { force: true }).then(() =>
          resolve(signal === null ? { exitCode } : { exitCode, signal }),
        )
      })
    })
    return {
      pid: child.pid as number,
      stdout: child.stdout,
      stderr: child.stderr,
      exited,
      kill: async (signal) => {
        // The whole process group: unshare, the setup shell, and the container's pid 1.
        try {
          process.kill(-(child.pid as number), signal)
        } catch {
          // Already gone.
        }
      },
    }
  }

  async cleanup(_id: string, containerDir: string): Promise<void> {
    const pidFile = path.join(containerDir, 'chroot.pid')
    const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim())
    if (pid > 0) {
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
      // NOTE: a pid can be reused after a reboot; only a process that is our unshare
      // over this container's root is killed.
      if (cmdline.startsWith('unshare') && cmdline.includes(containerDir)) {
        try {
          process.kill(-pid, 'SIGKILL')
        } catch {
          // Already gone.
        }
      }
    }
    await rm(pidFile, { force: true })
  }
}

/** Shell quoting for one word. */
function quote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`
}

function setupScript(req: LaunchRequest): string {
  const root = req.rootDir
  const lines = ['set -e']

  // A private /dev with only harmless nodes, like the OCI default device list.
  lines.push(`if [ -d ${quote(`${root}/dev`)} ]; then`)
  lines.push(`  mount -t tmpfs -o nosuid,mode=755 tmpfs ${quote(`${root}/dev`)}`)
  for (const dev of DEVICES) {
    const target = quote(`${root}/dev/${dev}`)
    lines.push(`  touch ${target} && mount --bind /dev/${dev} ${target}`)
  }
  lines.push('fi')

  for (const bind of req.binds) {
    const target = quote(path.join(root, bind.target))
    const source = quote(bind.source)
    lines.push(
      `if [ -d ${source} ]; then mkdir -p ${target}; else mkdir -p "$(dirname ${target})"; touch ${target}; fi`,
    )
    lines.push(`mount --rbind ${source} ${target}`)
    if (bind.readOnly) lines.push(`mount -o remount,bind,ro ${target}`)
  }

  const { uid, gid, cwd } = req.process
  lines.push(
    `exec unshare --root=${quote(root)} --wd=${quote(cwd)} --setgid=${gid} --setuid=${uid} -- "$@"`,
  )
  return lines.join('\n')
}
