"""The site side: a Flower ClientApp that gates, trains, charges and answers."""
