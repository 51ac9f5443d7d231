# Allocation-heavy Perl workload with deterministic output.
# Run by compare_under_preload.sh with and without strata preloaded.
use strict;
use warnings;
use Digest::MD5 qw(md5_hex);

my %table;
for my $i (1 .. 200_000) {
    $table{"key$i"} = [ $i, "v" x ($i % 41), { n => $i % 13 } ];
}
delete $table{"key$_"} for grep { $_ % 3 == 0 } 1 .. 200_000;
print "hash size ", scalar(keys %table), "\n";

my @sorted = sort { $a->[0] <=> $b->[0] } values %table;
print "first ", $sorted[0][0], " last ", $sorted[-1][0], "\n";

my $text = join "\n", map { "$_ " . ("word" x ($_ % 9)) } 1 .. 100_000;
my $count = () = $text =~ /(wordword)/g;
(my $replaced = $text) =~ s/o+/0/g;
print "matches $count digest ", md5_hex($replaced), "\n";

my @strings;
for my $i (1 .. 3000) {
    push @strings, chr(65 + $i % 26) x (($i * 7919) % 100_000);
    splice(@strings, ($i * 13) % scalar(@strings), 1) if @strings > 40;
}
my $total = 0;
$total += length for @strings;
print "strings kept ", scalar(@strings), " total $total\n";

my $packed = pack("N*", 1 .. 100_000);
my @unpacked = unpack("N*", $packed);
print "pack ", length($packed), " sum ", eval { my $s = 0; $s += $_ for @unpacked; $s }, "\n";

my %words;
$words{ lc $_ }++ for split /\W+/, $text;
my @top = (sort { $words{$b} <=> $words{$a} || $a cmp $b } keys %words)[0 .. 4];
print "top words @top\n";
print "sprintf ", md5_hex(join ",", map { sprintf("%08.3f|%-10s|%x", $_ / 7, "n$_", $_) } 1 .. 50_000), "\n";
