-- The target database, in utf8mb4 so that any CloudTrail text (emoji in a userAgent) fits.
CREATE DATABASE IF NOT EXISTS `{{ params.database }}` CHARACTER SET utf8mb4;
