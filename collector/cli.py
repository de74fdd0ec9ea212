import click


@click.group()
def main():
    """surgewatch: per-service log-write rates and TCP resets."""
