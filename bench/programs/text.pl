#!/usr/bin/perl
# Perl workload: generate text, split it into words, count them in a hash,
# rewrite lines with regular expressions, and sort the results.
#
# usage: text.pl LINES
use strict;
use warnings;
use Digest::MD5 qw(md5_hex);

my $lines = shift // 100000;
my @syllables = qw(ka lo mi ne ru sa ti vo xe yu zo ba ce di fu ga he);
my $state = 42;
sub rnd { $state = ($state * 1103515245 + 12345) % 2147483648; return $state >> 12; }

my @text;
for my $i (1 .. $lines) {
    my $words = 4 + rnd() % 12;
    my @w;
    for (1 .. $words) {
        my $len = 1 + rnd() % 4;
        push @w, join('', map { $syllables[rnd() % @syllables] } 1 .. $len);
    }
    push @text, join(' ', @w);
}

my %count;
my $ctx = Digest::MD5->new;
for my $line (@text) {
    $count{$_}++ for split / /, $line;
    (my $copy = $line) =~ s/\b(\w)(\w*)/\U$1\E$2/g;
    $copy =~ s/(ka|lo)+/<$&>/g;
    $ctx->add($copy);
}
my @top = sort { $count{$b} <=> $count{$a} || $a cmp $b } keys %count;
my %by_len;
push @{ $by_len{length $_} }, $_ for @top;
my $summary = join ';', map { "$_=" . scalar @{ $by_len{$_} } } sort { $a <=> $b } keys %by_len;
printf "perl: lines=%d words=%d top=%s digest=%s\n", $lines, scalar @top,
    join(',', @top[0 .. 4]), substr($ctx->hexdigest, 0, 16);
print "perl: lengths $summary\n";
