/* A program for stats_output.sh, run with libstrata.so preloaded. Modes:
 *   exit    allocates, writes one line to stdout, ends with exit(0) from a
 *           function below main
 *   return  the same, returning from main
 *   fork    the same, after a forked child (no exec) ended with exit(0)
 *   json    writes strata_stats_json() to stdout (looked up at run time: the
 *           program is linked against nothing but libc)
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void* volatile keep[1100];

static void allocate(void) {
  /* 1000 blocks of 100 bytes (strata's 112-byte class), 3 large blocks. */
  for (int i = 0; i < 1000; ++i) keep[i] = malloc(100);
  for (int i = 0; i < 3; ++i) keep[1000 + i] = malloc(3 << 20);
  for (int i = 0; i < 500; ++i) free(keep[i]);
}

static void finish(void) {
  printf("stats_program done\n");
  exit(0);
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "exit";
  if (strcmp(mode, "json") == 0) {
    size_t (*json)(char*, size_t) =
        (size_t(*)(char*, size_t))dlsym(RTLD_DEFAULT, "strata_stats_json");
    if (json == NULL) {
      fprintf(stderr, "strata_stats_json not found: is libstrata.so preloaded?\n");
      return 2;
    }
    allocate();
    size_t n = json(NULL, 0) + 4096;
    char* buf = malloc(n);
    json(buf, n);
    puts(buf);
    return 0;
  }
  allocate();
  if (strcmp(mode, "fork") == 0) {
    pid_t pid = fork();
    if (pid == 0) exit(0);
    int status;
    waitpid(pid, &status, 0);
  }
  if (strcmp(mode, "return") == 0) {
    printf("stats_program done\n");
    return 0;
  }
  finish();
}
