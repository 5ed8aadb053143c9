// The line protocol between bench/run.mjs and a benchmark child process:
//   child  -> parent (stdout): "READY <json>"   set up, waiting for the go signal
//   parent -> child  (stdin):  "GO"              start measuring
//   child  -> parent (stdout): "RESULT <json>"  the figures; the child then exits
// A child whose parent goes away (stdin closes) exits as soon as its event loop runs; a child busy
// in a synchronous loop is killed by run.mjs, which kills every child it started on exit, SIGINT,
// SIGTERM and SIGHUP, and after a case's timeout.

let goResolve = null;
let goSeen = false;
let stdinBuf = '';

function onStdin(chunk) {
  stdinBuf += chunk;
  if (!goSeen && stdinBuf.includes('GO\n')) {
    goSeen = true;
    if (goResolve) goResolve();
  }
}

/** Starts watching stdin: the go signal, and the parent's death. */
export function watchParent() {
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', onStdin);
  process.stdin.on('end', () => process.exit(70));
  process.stdin.on('error', () => process.exit(70));
  // Let a child that is done exit even though stdin is still open.
  process.stdin.unref?.();
}

export function announceReady(info = {}) {
  process.stdout.write(`READY ${JSON.stringify({ pid: process.pid, ...info })}\n`);
}

/** Resolves when the parent says GO (keeps the event loop alive meanwhile). */
export function waitForGo() {
  if (goSeen) return Promise.resolve();
  process.stdin.ref?.();
  return new Promise((resolve) => {
    goResolve = () => {
      process.stdin.unref?.();
      resolve();
    };
  });
}

/** Writes the result line (stdout to a pipe is synchronous on Linux) and exits. */
export function reportAndExit(result, code = 0) {
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
  process.exit(code);
}

export function fail(err) {
  process.stderr.write(`bench child ${process.argv.slice(2, 4).join(' ')}: ${err?.stack ?? err}\n`);
  process.exit(1);
}

/**
 * CPU time, page faults and context switches of this process since `start` (a previous
 * snapshot), for "where does the time go" questions: a side whose CPU time is close to the wall
 * time is the bottleneck; involuntary switches mean another process took its CPU.
 */
export function usageSnapshot() {
  return { ru: process.resourceUsage(), t: performance.now() };
}

export function usageSince(start, messages) {
  const b = process.resourceUsage();
  const a = start.ru;
  const wallUs = (performance.now() - start.t) * 1000;
  const userUs = b.userCPUTime - a.userCPUTime;
  const sysUs = b.systemCPUTime - a.systemCPUTime;
  return {
    wallMs: Math.round(wallUs) / 1000,
    cpuBusy: wallUs > 0 ? Math.round(((userUs + sysUs) / wallUs) * 1000) / 1000 : null,
    userNsPerMsg: messages ? Math.round((userUs * 1000) / messages) : null,
    sysNsPerMsg: messages ? Math.round((sysUs * 1000) / messages) : null,
    minorFaults: b.minorPageFault - a.minorPageFault,
    voluntarySwitches: b.voluntaryContextSwitches - a.voluntaryContextSwitches,
    involuntarySwitches: b.involuntaryContextSwitches - a.involuntaryContextSwitches,
  };
}
