# The python template (see template_linux.go). A jail's init starts it as
# `python3 -c <this>` under a uid of its own, with only CAP_SETUID,
# CAP_SETGID and CAP_SETPCAP, under the seccomp filter and no_new_privs,
# in namespaces of its own, with pipes going nowhere on fds 0-2 and a
# socket on fd 3. It then forks one process per step, which drops to the
# jail's user and every capability before it reads a line of the script.
#
# The init sends one message per step: "uid gid resource value ...\n"
# (the step's rlimits where they differ from those the template was
# started with) then the step's argv, NUL-separated, with the step's
# stdin, stdout and stderr. The template forks the step's process, which
# drops its privileges, then writes its pid to the template, which hands
# it on (an empty answer means it failed), waits for it and sends its
# wait status. EOF on the socket: the template exits.
#
# When the script ends, the process ends as soon as the rest of the
# interpreter's exit could not be seen (see finish).
#
# What a script can tell apart from a fresh interpreter: one more frame
# under its own (inspect.stack(), recursion depth), _socket in
# sys.modules, gc.get_freeze_count(), the hash seed (the same for every
# run of one template), its parent's pid (the template's, which /proc
# hides as it hides the init's), when the collector runs, and the CPU
# its interpreter did not spend starting and exiting. Tracebacks,
# sys.argv, sys.orig_argv, sys.path, __main__, the std streams, what
# the exit prints and exit statuses are as in a fresh one.
import sys, os, gc, _socket

del sys.path[0]  # -c's '' (the working directory): the script's own replaces it
imported = set(sys.modules)
import ctypes, atexit, _signal, _thread, _weakref

imported = set(sys.modules) - imported  # hidden again before the first fork
libc = ctypes.CDLL(None, use_errno=True)
cap_header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
no_caps = (ctypes.c_uint32 * 6)()


def drop(uid, gid):
    # Every capability goes, the bounding set first (that needs
    # CAP_SETPCAP), then the ids (CAP_SETGID, CAP_SETUID), then what is
    # left of the other sets. The kernel does not clear capabilities on a
    # change between two non-zero uids, so the capset is what empties
    # them; /proc/self/status proves it.
    cap = 0
    while libc.prctl(24, cap, 0, 0, 0) == 0:  # PR_CAPBSET_DROP
        cap += 1
    if cap == 0 or ctypes.get_errno() != 22:  # EINVAL: past the last one
        return False
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if libc.prctl(47, 4, 0, 0, 0) != 0:  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL
        return False
    if libc.capset(cap_header, no_caps) != 0:
        return False
    # A change of ids makes a process non-dumpable; an exec'd program
    # would be dumpable again, and its /proc/self files its own.
    if libc.prctl(4, 1, 0, 0, 0) != 0:  # PR_SET_DUMPABLE
        return False
    status = read_all(os.open("/proc/self/status", os.O_RDONLY))

    def field(name):  # the fields read, not a dict of all: fewer allocations
        start = status.index(b"\n" + name + b":") + len(name) + 2
        return status[start : status.index(b"\n", start)].strip()

    ids = f"{uid}\t{uid}\t{uid}\t{uid}".encode(), f"{gid}\t{gid}\t{gid}\t{gid}".encode()
    return (field(b"Uid"), field(b"Gid")) == ids and field(b"Groups") == b"" and all(
        int(field(k), 16) == 0 for k in (b"CapInh", b"CapPrm", b"CapEff", b"CapBnd", b"CapAmb")
    )


def read_all(fd):
    # Raw reads into one bytes object: a file object would allocate more,
    # and after a fork every page an allocation writes to is a page fault.
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
    os.close(fd)
    return data


def serve():
    sock = _socket.socket(fileno=3)
    while True:
        msg, anc, _, _ = sock.recvmsg(65536, _socket.CMSG_SPACE(3 * 4))
        fds = [
            int.from_bytes(data[i : i + 4], sys.byteorder)
            for level, kind, data in anc
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS
            for i in range(0, len(data) - 3, 4)
        ]
        if len(fds) != 3 or not msg:
            os._exit(0)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            sock.close()
            return msg, fds, w
        os.close(w)
        for fd in fds:
            os.close(fd)
        started = read_all(r)
        sock.send(started)
        _, status = os.waitpid(pid, 0)
        if started:
            sock.send(str(status).encode())


def finish(status, interrupted, exited):
    # A normal exit frees every object, the template's too: three
    # quarters of a hello world's CPU after the fork, most of it copying
    # the template's pages that the frees write to. So this does what
    # Py_FinalizeEx does that a script can see, in its order - join the
    # threads, flush stdout and stderr - and ends the process there when
    # nothing else it would do can be seen: no atexit callback, no thread
    # left, no object the script made has a finalizer (__del__, a
    # suspended generator's, an open file's) or is a weak reference with
    # a callback, and no gc callback, frozen object or PYTHONINSPECT was
    # added. Otherwise the interpreter exits as usual, which repeats
    # nothing that was done (joining and flushing again do nothing).
    if atexit._ncallbacks() and not interrupted:
        # Called from here, a callback's uncaught exception would be
        # printed with this function's frame: the usual exit calls them.
        return fallback(status, exited)
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()
    atexit._run_exitfuncs()
    try:
        # Streams of our own only: another's flush could do anything.
        # (Nothing of ours may refer to them: frozen, we are never freed,
        # and a stream that is not freed is not flushed at the end.)
        for f in (sys.stdout, sys.stderr):
            if type(f) is not text_io:
                raise ValueError
        if sys.stdout is not sys.__stdout__ or sys.stderr is not sys.__stderr__:
            raise ValueError
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    else:
        if interrupted:  # as CPython: killed by the signal that interrupted it
            _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
            os.kill(os.getpid(), _signal.SIGINT)
        if unobservable():
            os._exit(status)
    fallback(status, exited)


def fallback(status, exited):
    # The usual exit: a script's sys.exit(), or its end.
    if status or exited:
        sys.exit(status)


def unobservable():
    if _thread._count() or gc.callbacks or gc.get_freeze_count() > frozen or os.environ.get("PYTHONINSPECT"):
        return False
    seen = 0
    for generation in range(3):  # not the template's: they are frozen
        objects = gc.get_objects(generation)
        seen += len(objects)
        if seen > 100000:  # looking would cost more than the frees
            return False
        for o in objects:
            finalizer = getattr(type(o), "__del__", None)
            if finalizer is None:
                if isinstance(o, _weakref.ref) and o.__callback__ is not None:
                    return False
            elif not (
                finalizer is iobase_finalizer
                and o.closed is True  # closing it again does nothing
                or type(o) is generator
                and o.gi_frame is None  # it has finished
            ):
                return False
    return True


iobase_finalizer = sys.modules["_io"]._IOBase.__del__
generator = type((lambda: (yield))())


text_io = type(sys.stdout)
# What each fork would otherwise do for the first time, and so pay for in
# page faults (each write to a page it shares with the template copies
# that page; a fault cost 20-35 us on a paravirtualised 2-vCPU host): the
# first compile (the parser's and compiler's state), the look-ups of the
# libc functions drop calls, and hiding the modules this file imported
# (what drop uses of them, this file's globals keep).
compile('print("hello")\n', "<template>", "exec", dont_inherit=True)
libc.prctl, libc.capset
while imported:
    del sys.modules[imported.pop()]
gc.freeze()  # what every step shares stays out of its collector's way
msg, fds, ready = serve()
head, _, argv = msg.partition(b"\n")
head = [int(n) for n in head.split()]
os.setsid()
try:
    dropped = drop(head[0], head[1])
except BaseException:
    dropped = False
if not dropped:
    os._exit(1)
limits = head[2:]
if limits:  # only when the step's differ from those it was started with
    import resource

    for r, v in zip(limits[::2], limits[1::2]):
        resource.setrlimit(r, (v, v))
    del sys.modules["resource"], resource  # as if never imported
for i, fd in enumerate(fds):
    os.dup2(fd, i)
    os.close(fd)
os.write(ready, str(os.getpid()).encode())
os.close(ready)
del msg, fds, ready, head, limits, drop, serve, read_all, dropped, imported, libc, ctypes, cap_header, no_caps
os.chdir("/box")
sys.orig_argv = [os.fsdecode(a) for a in argv.split(b"\0")]
sys.argv = sys.orig_argv[1:]
path = os.path.join(os.getcwd(), sys.argv[0])
sys.path.insert(0, os.path.dirname(path))
try:
    with sys.modules["io"].open_code(path) as f:
        src = f.read()
except OSError as e:
    print(f"{sys.orig_argv[0]}: can't open file {path!r}: [Errno {e.errno}] {e.strerror}", file=sys.stderr)
    sys.exit(2)
main = type(sys)("__main__")
main.__dict__.update(
    __file__=path,
    __cached__=None,
    __loader__=sys.modules["_frozen_importlib_external"].SourceFileLoader("__main__", path),
    __annotations__={},
    __builtins__=sys.modules["builtins"],
)
sys.modules["__main__"] = main
frozen = gc.get_freeze_count()  # more at the end: the script froze objects
try:
    code = compile(src, path, "exec", dont_inherit=True)
except (SyntaxError, ValueError) as e:
    # CPython prints a script it cannot compile with no traceback at all.
    sys.excepthook(type(e), e.with_traceback(None), None)
    del e, main
    finish(1, False, False)
del src
status, interrupted, exited = 0, False, False
try:
    exec(code, main.__dict__)
except SystemExit as e:
    # Only a status is ended here; a message is printed by the usual exit.
    if e.code is not None and (type(e.code) is not int or not -(1 << 31) <= e.code < 1 << 31):
        del code, main
        raise
    status, exited = e.code or 0, True
except BaseException as e:
    # Hide this file's frame: the traceback starts in the script.
    tb = e.__traceback__.tb_next
    sys.excepthook(type(e), e.with_traceback(tb), tb)
    status, interrupted = 1, isinstance(e, KeyboardInterrupt)
    del tb
# Only sys.modules may hold the script's module, as in a fresh interpreter:
# its exit frees the module when it takes it out, and its finalizers run
# then. (Our globals are frozen and would keep it to the end.)
del code, main
finish(status, interrupted, exited)
