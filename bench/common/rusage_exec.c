/* rusage_exec: runs a command and reports its wall time, CPU time and peak
 * RSS, for bench/run.py.
 *
 *   rusage_exec RESULT_FILE [--preload LIB] -- PROGRAM [ARGS...]
 *
 * Writes "WALL_S CPU_S MAXRSS_KIB WAIT_STATUS" to RESULT_FILE and exits with
 * the command's exit code (128 + signal if it was killed).
 *
 * Why not measure from Python directly: a child forked by a process inherits
 * that process's resident set size as its starting peak (ru_maxrss keeps the
 * high-water mark across exec), so every run would report at least the
 * Python runner's own RSS. Forking from this small program instead keeps the
 * peak the command's own. --preload sets LD_PRELOAD in the command only, so
 * this program itself never runs on the allocator under test.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double seconds(struct timeval tv) { return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6; }

int main(int argc, char** argv) {
  const char* preload = NULL;
  int first = 2;
  if (argc >= 3 && strcmp(argv[first], "--preload") == 0) {
    preload = argv[first + 1];
    first += 2;
  }
  if (argc < 2 || first >= argc || strcmp(argv[first], "--") != 0 || first + 1 >= argc) {
    fprintf(stderr, "usage: %s RESULT_FILE [--preload LIB] -- PROGRAM [ARGS...]\n", argv[0]);
    return 2;
  }
  char** command = argv + first + 1;

  const double start = now();
  const pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return 2;
  }
  if (pid == 0) {
    if (preload && setenv("LD_PRELOAD", preload, 1) != 0) _exit(127);
    execvp(command[0], command);
    fprintf(stderr, "rusage_exec: cannot run %s: %s\n", command[0], strerror(errno));
    _exit(127);
  }
  int status = 0;
  struct rusage ru;
  while (wait4(pid, &status, 0, &ru) < 0) {
    if (errno != EINTR) {
      perror("wait4");
      return 2;
    }
  }
  const double wall = now() - start;

  FILE* out = fopen(argv[1], "w");
  if (!out) {
    perror(argv[1]);
    return 2;
  }
  fprintf(out, "%.6f %.6f %ld %d\n", wall, seconds(ru.ru_utime) + seconds(ru.ru_stime),
          ru.ru_maxrss, status);
  fclose(out);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}
